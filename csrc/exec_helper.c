/* pycontain-exec: the last step before a container's program, run from a sealed memfd.
 *
 * Why it exists (CVE-2019-5736): whatever process performs the final execve into the container is,
 * until then, visible in the container's PID namespace, and if that process is a host binary the
 * container can reach that binary's inode through /proc/PID/exe (or a `#!/proc/self/exe` script
 * whose interpreter resolves to it, loaded with the image's own ld.so). pycontain's child is the
 * host's Python. So the child execs this small static program from a memfd copy, sealed against
 * writes, and this program performs the container's execve: /proc/self/exe is then an anonymous
 * memory file that no host path leads to, and it has no PT_INTERP, so no image's loader ever runs
 * with a host binary behind it.
 *
 *   argv: pycontain-exec --pycontain-exec STATUS_FD PROGRAM [ARG...]   envp: the container's env
 *   STATUS_FD "-" (an OCI container started by `pycontain-oci start`, whose creator has exited): a
 *   failure is one line on stderr instead.
 *
 * PROGRAM is looked up in the container's $PATH (envp's, not ours) as execvp(3) does, without its
 * fallback of running ENOEXEC files with /bin/sh. On failure one line "CODE\tmessage" goes to
 * STATUS_FD (the close-on-exec pipe pycontain reads: EOF means the execve succeeded) and the exit
 * status is CODE: 127 not found, 126 found but not executable.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define MAGIC "--pycontain-exec"
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static void put(int fd, const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void fail(int status_fd, int code, const char *program, const char *what, const char *detail) {
    char digits[4] = { (char)('0' + code / 100), (char)('0' + code / 10 % 10), (char)('0' + code % 10), 0 };
    if (status_fd < 0) {  /* "-": nobody reads a status pipe any more (OCI create/start): say it on stderr */
        status_fd = 2;
        put(status_fd, "pycontain-exec: ");
    } else {
        put(status_fd, digits);
        put(status_fd, "\t");
    }
    put(status_fd, program);
    put(status_fd, what);
    if (detail) put(status_fd, detail);
    if (status_fd == 2) put(status_fd, "\n");
    _exit(code);
}

int main(int argc, char **argv, char **envp) {
    if (argc < 4 || strcmp(argv[1], MAGIC) != 0) {
        put(2, "pycontain-exec: runs only as pycontain's last step into a container\n");
        return 126;
    }
    int status_fd = 0;
    if (strcmp(argv[2], "-") == 0) {
        status_fd = -1;
    } else {
        for (const char *p = argv[2]; *p; p++) {
            if (*p < '0' || *p > '9' || status_fd > 100000) return 126;
            status_fd = status_fd * 10 + (*p - '0');
        }
        /* Keep the report pipe out of the container's program: its EOF is the "exec succeeded" signal. */
        if (fcntl(status_fd, F_SETFD, FD_CLOEXEC) < 0) return 126;
    }
    char *program = argv[3];
    char **args = argv + 3;
    if (strchr(program, '/')) {
        execve(program, args, envp);
        if (errno == ENOENT) fail(status_fd, 127, program, ": no such file in the container", 0);
        fail(status_fd, 126, program, ": cannot execute: ", strerror(errno));
    }
    const char *path = DEFAULT_PATH;
    for (char **e = envp; *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0 && (*e)[5]) path = *e + 5;
    size_t plen = strlen(program);
    int denied = 0;
    while (1) {
        const char *end = strchrnul(path, ':');
        size_t dlen = (size_t)(end - path);
        char full[4096];
        if (dlen + plen + 2 <= sizeof full) {
            if (dlen == 0) full[dlen++] = '.';
            else memcpy(full, path, dlen);
            full[dlen] = '/';
            memcpy(full + dlen + 1, program, plen + 1);
            execve(full, args, envp);
            if (errno == EACCES) denied = EACCES;
            else if (errno != ENOENT && errno != ENOTDIR)
                fail(status_fd, 126, program, ": cannot execute: ", strerror(errno));
        }
        if (!*end) break;
        path = end + 1;
    }
    if (denied) fail(status_fd, 126, program, ": cannot execute: ", strerror(denied));
    fail(status_fd, 127, program, ": executable file not found in the container's $PATH", 0);
    return 127;
}
