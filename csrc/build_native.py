"""cffi build script (out-of-line API mode): compiled once by `pip install`.

API mode compiles a real C extension, so importing it at run time costs a dlopen and no
C parsing (ABI mode with cdef at import time costs tens of milliseconds per start).
"""

from cffi import FFI


ffibuilder = FFI()
# The declarations are the header's own (cffi strips its comments); only the #include lines go, and
# pid_t is declared as "some integer type" for cffi to size at compile time.
with open("csrc/syscalls.h") as header:
    declarations = "".join(line for line in header if not line.startswith("#"))
ffibuilder.cdef("typedef int... pid_t;\n" + declarations)
# No libraries=["seccomp"]: csrc/syscalls.c dlopens libseccomp.so.2 when a spec's seccomp filter is first
# compiled (pc_scmp_open), so this extension, loaded on every start, does not load it. Only seccomp.h is
# needed at build time (libseccomp-dev); dlopen itself is in glibc's libc since 2.34 (Debian 12: 2.36).
ffibuilder.set_source(
    "pycontain._native",
    '#include "syscalls.h"',
    sources=["csrc/syscalls.c"],
    include_dirs=["csrc"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
