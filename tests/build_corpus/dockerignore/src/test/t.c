src/test/t.c
