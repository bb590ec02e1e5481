"""cffi build script (out-of-line API mode): compiled once by `pip install`.

API mode compiles a real C extension, so importing it at run time costs a dlopen and no
C parsing (ABI mode with cdef at import time costs tens of milliseconds per start).
"""

from cffi import FFI


ffibuilder = FFI()
ffibuilder.cdef(
    """
    typedef int... pid_t;
    pid_t pc_clone(unsigned long flags);
    int pc_unshare(int flags);
    int pc_setns(int fd, int nstype);
    int pc_pivot_root(const char *new_root, const char *put_old);
    int pc_mount(const char *source, const char *target, const char *fstype,
                 unsigned long flags, const char *data);
    int pc_umount2(const char *target, int flags);
    int pc_sethostname(const char *name, size_t len);
    int pc_close_range(unsigned int first, unsigned int last, unsigned int flags);
    int pc_cap_ambient_clear_all(void);
    """
)
ffibuilder.set_source(
    "pycontain._native",
    '#include "syscalls.h"',
    sources=["csrc/syscalls.c"],
    include_dirs=["csrc"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
