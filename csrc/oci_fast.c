/* pycontain-oci: the fast path of `start` and `delete`, then the Python command line for everything else.
 *
 * Why it exists: an engine calls its runtime several times per container (podman: create, start,
 * delete; containerd's shim: create, start, delete, delete --force), and each call of the Python
 * command line pays the interpreter's start-up first: 7.2 ms for `python3 -IS -c pass` on the
 * reference VM, then ~3 ms of imports, against 4.3 ms for a whole `runc --version`. `start` (open the
 * exec FIFO, read one byte) and `delete` (kill, rmdir the cgroup, remove the record) are a few system
 * calls each; done here they cost ~1 ms. Measured with scripts/bench --engines: create+start+delete
 * of a bundle went from 39.6 ms (1.11x runc) to the figure in docs/performance.md.
 *
 * It handles only the plain cases, read from the record's `fast` file that `create` writes
 * (pycontain/oci/state.py): the init's pid and start time, whether the spec has poststart or
 * poststop hooks, and the cgroup directories. Anything else (other commands and flags, hooks, a
 * record it cannot read, a container in a state that needs an error message) is handed, unchanged,
 * to the Python implementation, which is the reference: this file never decides anything Python
 * would decide differently, it only gets there sooner.
 *
 *   PYCONTAIN_OCI_PY (compile-time): the Python launcher to exec.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#ifndef PYCONTAIN_OCI_PY
#error "build with -DPYCONTAIN_OCI_PY=\"/path/to/the/python/launcher\""
#endif
#define DEFAULT_ROOT "/run/pycontain-oci"
#define MAX_CGROUPS 32

static char **saved_argv;

/* Hand the whole command line, as it came, to the Python implementation. */
static void python(void) {
    saved_argv[0] = (char *)PYCONTAIN_OCI_PY;
    execv(PYCONTAIN_OCI_PY, saved_argv);
    dprintf(2, "pycontain-oci: cannot run %s: %s\n", PYCONTAIN_OCI_PY, strerror(errno));
    _exit(125);
}

static int valid_id(const char *id) {
    if (!*id || strlen(id) > 1024 || !strcmp(id, ".") || !strcmp(id, "..")) return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '+' || *p == '-' || *p == '.'))
            return 0;
    return 1;
}

/* The state root must be root's own directory, as the Python side insists (state.check_root). */
static int safe_root(const char *root) {
    struct stat st;
    return lstat(root, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == 0 && !(st.st_mode & 022);
}

struct record {
    long pid;
    unsigned long long start;
    int hooks;
    int ncg, nparents;
    char cgroups[MAX_CGROUPS][512];
    char parents[MAX_CGROUPS][512];
};

/* The `fast` file: "pid PID START", "hooks 0|1", "cgroup DIR" and "parent DIR" lines. */
static int read_record(int dirfd, struct record *r) {
    memset(r, 0, sizeof *r);
    int fd = openat(dirfd, "fast", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return 0;
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0 || n == (ssize_t)sizeof buf - 1) return 0;
    buf[n] = 0;
    int have_pid = 0, have_hooks = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (sscanf(line, "pid %ld %llu", &r->pid, &r->start) == 2) have_pid = 1;
        else if (sscanf(line, "hooks %d", &r->hooks) == 1) have_hooks = 1;
        else if (!strncmp(line, "cgroup /", 8) && r->ncg < MAX_CGROUPS && strlen(line + 7) < 512)
            strcpy(r->cgroups[r->ncg++], line + 7);
        else if (!strncmp(line, "parent /", 8) && r->nparents < MAX_CGROUPS && strlen(line + 7) < 512)
            strcpy(r->parents[r->nparents++], line + 7);
        else return 0;
    }
    return have_pid && have_hooks && r->pid > 0;
}

/* Alive: the same process (start time, field 22 of /proc/PID/stat) and not a zombie waiting for its
 * parent to collect it. */
static int alive(const struct record *r) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%ld/stat", r->pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ') return 0;
    char state = p[2];
    if (state == 'Z' || state == 'X') return 0;
    p += 2;
    for (int field = 3; field < 22; field++) {  /* fields after the command: 3 is the state */
        p = strchr(p, ' ');
        if (!p) return 0;
        p++;
    }
    return strtoull(p, NULL, 10) == r->start;
}

static void pause_ms(long ms) {
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int cmd_start(int dirfd, const struct record *r) {
    if (r->hooks) return -1;
    int fd = openat(dirfd, "exec.fifo", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -1;  /* not created (or gone): Python says which state it is in */
    struct pollfd pfd = { fd, POLLIN, 0 };
    for (;;) {
        int ready = poll(&pfd, 1, 100);
        if (ready > 0) {
            char byte;
            if (read(fd, &byte, 1) == 1) break;
            if (!alive(r)) { close(fd); return -1; }
            pause_ms(1);  /* POLLHUP before the init opened it: wait for it */
            continue;
        }
        if (ready < 0 && errno != EINTR) { close(fd); return -1; }
        if (!alive(r)) { close(fd); return -1; }
    }
    close(fd);
    unlinkat(dirfd, "exec.fifo", 0);
    return 0;
}

/* Whether the freezer holds the container (v1 freezer.state, v2 cgroup.freeze). */
static int frozen(const struct record *r) {
    for (int i = 0; i < r->ncg; i++) {
        const char *names[2] = { "freezer.state", "cgroup.freeze" };
        for (int k = 0; k < 2; k++) {
            char path[600], buf[32] = {0};
            snprintf(path, sizeof path, "%s/%s", r->cgroups[i], names[k]);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) continue;
            ssize_t n = read(fd, buf, sizeof buf - 1);
            close(fd);
            if (n > 0 && (buf[0] == '1' || !strncmp(buf, "FROZEN", 6) || !strncmp(buf, "FREEZING", 8))) return 1;
        }
    }
    return 0;
}

static void kill_cgroup(const char *dir) {
    char path[600];
    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    for (int round = 0; round < 100; round++) {
        FILE *f = fopen(path, "re");
        if (!f) return;
        long pid;
        int any = 0;
        while (fscanf(f, "%ld", &pid) == 1) { kill((pid_t)pid, SIGKILL); any = 1; }
        fclose(f);
        if (!any) return;
        pause_ms(10);
    }
}

static int cmd_delete(int dirfd, const struct record *r, int force) {
    if (r->hooks) return -1;
    if (alive(r)) {
        struct stat st;
        int created = fstatat(dirfd, "exec.fifo", &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (!created && !force) return -1;  /* running or paused: Python's error (or thaw, for paused) */
        if (frozen(r)) return -1;  /* paused: Python thaws it first, or a SIGKILL would wait forever */
        kill((pid_t)r->pid, SIGKILL);
        for (int waited = 0; alive(r) && waited < 2000; waited++) pause_ms(5);
    }
    for (int i = 0; i < r->ncg; i++) {
        kill_cgroup(r->cgroups[i]);
        for (int attempt = 0; attempt < 200; attempt++) {
            if (rmdir(r->cgroups[i]) == 0 || errno == ENOENT) break;
            if (errno != EBUSY) return -1;
            if (attempt == 20) kill_cgroup(r->cgroups[i]);
            pause_ms(5);
        }
    }
    for (int i = 0; i < r->nparents; i++) rmdir(r->parents[i]);  /* only if empty: others may live there */
    DIR *d = fdopendir(dup(dirfd));
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            unlinkat(dirfd, e->d_name, 0);
    closedir(d);
    return 1;
}

int main(int argc, char **argv) {
    saved_argv = argv;
    const char *root = getenv("PYCONTAIN_OCI_ROOT");
    if (!root || !*root) root = DEFAULT_ROOT;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i] + (argv[i][1] == '-' ? 2 : 1);
        if (!strcmp(a, "root") && i + 1 < argc) root = argv[++i];
        else if (!strncmp(a, "root=", 5)) root = a + 5;
        else if ((!strcmp(a, "log") || !strcmp(a, "log-format")) && i + 1 < argc) i++;
        else if (!strncmp(a, "log=", 4) || !strncmp(a, "log-format=", 11)) continue;
        else python();  /* --debug, --systemd-cgroup, --help, ...: Python's */
    }
    if (i >= argc || root[0] != '/') python();
    const char *cmd = argv[i++];
    int force = 0;
    int is_start = !strcmp(cmd, "start"), is_delete = !strcmp(cmd, "delete");
    if (!is_start && !is_delete) python();
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (is_delete && (!strcmp(argv[i], "--force") || !strcmp(argv[i], "-f") || !strcmp(argv[i], "-force") ||
                          !strcmp(argv[i], "--force=true")))
            force = 1;
        else python();
    }
    if (i != argc - 1 || !valid_id(argv[i]) || strlen(root) > 3000 || !safe_root(root)) python();
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", root, argv[i]);
    int dirfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dirfd < 0) python();
    if (flock(dirfd, LOCK_EX) < 0) python();
    struct record r;
    int done = -1;
    if (read_record(dirfd, &r)) done = is_start ? cmd_start(dirfd, &r) : cmd_delete(dirfd, &r, force);
    if (done < 0) {
        close(dirfd);  /* drops the lock: Python takes it again */
        python();
    }
    if (done == 1 && rmdir(path) < 0 && errno != ENOENT) {
        dprintf(2, "pycontain-oci: remove %s: %s\n", path, strerror(errno));
        return 125;
    }
    return 0;
}
