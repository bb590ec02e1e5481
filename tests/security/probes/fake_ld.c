/* gcc-flags: -nostdlib -fno-stack-protector -fno-builtin
 *
 * Stands in for an image's /lib64/ld-linux-x86-64.so.2 (CVE-2019-5736). The kernel runs it as the
 * interpreter of any dynamically linked program it executes in the container, including whatever
 * `#!/proc/self/exe` resolves to. It reports what /proc/self/exe is then, and whether it can be opened
 * for writing (the runc exploit's step), and never writes anything:
 *   loader exe DEV INO
 *   loader write ok|-ERRNO
 * No libc: a static glibc cannot start as an ELF interpreter (it relocates the program's headers, not
 * its own, and crashes before main), which would make the probe silent whatever the runtime did. */
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_stat 4
#define SYS_exit 60
#define O_WRONLY 01

static long sys3(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}

static void put(const char *s) {
    long n = 0;
    while (s[n]) n++;
    sys3(SYS_write, 1, (long)s, n);
}

static void put_num(long v) {
    char buf[24];
    int i = sizeof buf;
    int neg = v < 0;
    unsigned long u = neg ? (unsigned long)-v : (unsigned long)v;
    buf[--i] = 0;
    do {
        buf[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (neg) buf[--i] = '-';
    put(buf + i);
}

void _start(void) {
    unsigned long st[18]; /* struct stat on x86-64: st_dev, st_ino first */
    long r = sys3(SYS_stat, (long)"/proc/self/exe", (long)st, 0);
    put("loader exe ");
    if (r < 0) {
        put_num(r);
    } else {
        put_num((long)st[0]);
        put(" ");
        put_num((long)st[1]);
    }
    put("\nloader write ");
    r = sys3(SYS_open, (long)"/proc/self/exe", O_WRONLY, 0);
    if (r >= 0) {
        sys3(SYS_close, r, 0, 0);
        put("ok\n");
    } else {
        put_num(r);
        put("\n");
    }
    sys3(SYS_exit, 0, 0, 0);
    for (;;) {
    }
}
