/* Watches a container's /proc for processes that appear while `pycontain exec` enters it, and tries
 * what a hostile container process would (CVE-2019-5736, CVE-2016-9962):
 *   proc_watch STOPFILE MAX_SECONDS [hold]
 * Processes already there when it starts (the container's init, the shell) are ignored. For each new
 * process, each time what its /proc/PID/exe shows changes, one tab-separated line:
 *   PID  exe=LINK|!ERRNO  ino=DEV:INO|!ERRNO  write=ok|!ERRNO  mem=ok|!ERRNO  fds=N:LINK,...|!ERRNO  after=LINK|!ERRNO
 * write: open(/proc/PID/exe, O_WRONLY), the runc exploit's step (closed at once, nothing written).
 * mem: open(/proc/PID/mem), which needs ptrace access: what attaching to the process would give.
 * after: exe read again at the end of the line, so a line wholly before (or after) an execve is known. A
 * descriptor closed between listing and reading shows as !2 (ENOENT).
 * At the end, each exe seen (kept open with O_PATH) is reopened for writing through /proc/self/fd, as
 * the exploit does once the runtime has moved on:  reopen  LINK  ok|!ERRNO  [seals=N  pwrite=0|!ERRNO]
 * (the 1-byte pwrite past the end is tried only on a memfd, which answers F_GET_SEALS: never on a file).
 * hold: every pipe above fd 2 of a new process is also opened for writing through /proc/PID/fd/N and
 * kept open until the end ("held PID N"): a runtime that waits for EOF on such a pipe then waits forever. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_SEEN 4096
#define MAX_KEPT 256

static int ignored[1024], n_ignored;
static struct { int pid; char exe[256]; } seen[MAX_SEEN];
static int n_seen;
static struct { int fd; char exe[256]; } kept[MAX_KEPT];
static int n_kept;
static int hold;

static int is_ignored(int pid) {
    for (int i = 0; i < n_ignored; i++)
        if (ignored[i] == pid) return 1;
    return 0;
}

static int was_seen(int pid, const char *exe) {
    for (int i = 0; i < n_seen; i++)
        if (seen[i].pid == pid && !strcmp(seen[i].exe, exe)) return 1;
    return 0;
}

static void fds_of(int pid, char *out, size_t size) {
    char path[64], link[320], target[256];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d) {
        snprintf(out, size, "!%d", errno);
        return;
    }
    out[0] = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(link, sizeof link, "%s/%s", path, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n < 0) snprintf(target, sizeof target, "!%d", errno);
        else target[n] = 0;
        size_t used = strlen(out);
        snprintf(out + used, size - used, "%s%s:%s", used ? "," : "", e->d_name, target);
    }
    closedir(d);
}

static void hold_pipes(int pid, const char *fds) {
    const char *p = fds;
    while (*p && *p != '!') {
        int fd = atoi(p);
        const char *link = strchr(p, ':');
        if (!link) break;
        if (fd > 2 && strncmp(link + 1, "pipe:", 5) == 0) {
            char path[64];
            snprintf(path, sizeof path, "/proc/%d/fd/%d", pid, fd);
            if (open(path, O_WRONLY | O_NONBLOCK) >= 0) printf("held\t%d\t%d\n", pid, fd);
        }
        p = strchr(link, ',');
        if (!p) break;
        p++;
    }
}

static void look(int pid) {
    char path[64], path_exe[64], exe[256], ino[64], wr[16], mem[16], fds[2048];
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    snprintf(path_exe, sizeof path_exe, "%s", path);
    ssize_t n = readlink(path, exe, sizeof exe - 1);
    if (n < 0 && errno == ENOENT) return; /* gone already */
    if (n < 0) snprintf(exe, sizeof exe, "!%d", errno);
    else exe[n] = 0;
    if (was_seen(pid, exe) || n_seen >= MAX_SEEN) return;
    seen[n_seen].pid = pid;
    snprintf(seen[n_seen++].exe, sizeof seen[0].exe, "%s", exe);
    struct stat st;
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd >= 0 && fstat(fd, &st) == 0) {
        snprintf(ino, sizeof ino, "%lu:%lu", (unsigned long)st.st_dev, (unsigned long)st.st_ino);
        if (n_kept < MAX_KEPT) {
            kept[n_kept].fd = fd;
            snprintf(kept[n_kept++].exe, sizeof kept[0].exe, "%s", exe);
        } else {
            close(fd);
        }
    } else {
        snprintf(ino, sizeof ino, "!%d", errno);
        if (fd >= 0) close(fd);
    }
    int w = open(path, O_WRONLY | O_CLOEXEC);
    if (w >= 0) {
        close(w);
        snprintf(wr, sizeof wr, "ok");
    } else {
        snprintf(wr, sizeof wr, "!%d", errno);
    }
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    int m = open(path, O_RDONLY | O_CLOEXEC);
    if (m >= 0) {
        close(m);
        snprintf(mem, sizeof mem, "ok");
    } else {
        snprintf(mem, sizeof mem, "!%d", errno);
    }
    fds_of(pid, fds, sizeof fds);
    if (hold) hold_pipes(pid, fds);
    /* exe again: the process may have exec'd meanwhile, and what was tried then belongs to which stage */
    char after[256];
    n = readlink(path_exe, after, sizeof after - 1);
    if (n < 0) snprintf(after, sizeof after, "!%d", errno);
    else after[n] = 0;
    printf("%d\texe=%s\tino=%s\twrite=%s\tmem=%s\tfds=%s\tafter=%s\n", pid, exe, ino, wr, mem, fds, after);
    fflush(stdout);
}

static void scan(int record_only) {
    DIR *d = opendir("/proc");
    if (!d) return;
    struct dirent *e;
    int self = getpid();
    while ((e = readdir(d))) {
        int pid = atoi(e->d_name);
        if (pid <= 0 || pid == self) continue;
        if (record_only) {
            if (n_ignored < 1024) ignored[n_ignored++] = pid;
        } else if (!is_ignored(pid)) {
            look(pid);
        }
    }
    closedir(d);
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    hold = argc > 3 && strcmp(argv[3], "hold") == 0;
    scan(1);
    printf("watching\n");
    fflush(stdout);
    time_t end = time(NULL) + atoi(argv[2]);
    while (access(argv[1], F_OK) != 0 && time(NULL) < end) scan(0);
    /* whoever made the stop file (an `exec touch`) dies with this init: let it finish first */
    usleep(300000);
    for (int i = 0; i < n_kept; i++) {
        /* What the kept descriptor is, by its own link: the process may have exec'd between the readlink
         * that labelled it and the open. Only a memfd (one that answers F_GET_SEALS) is ever written. */
        char self_fd[64], now[256];
        snprintf(self_fd, sizeof self_fd, "/proc/self/fd/%d", kept[i].fd);
        ssize_t n = readlink(self_fd, now, sizeof now - 1);
        now[n < 0 ? 0 : n] = 0;
        int w = open(self_fd, O_WRONLY | O_CLOEXEC);
        if (w < 0) {
            printf("reopen\t%s\t!%d\n", now, errno);
            continue;
        }
        int seals = fcntl(w, F_GET_SEALS);
        if (seals >= 0) {
            struct stat st;
            fstat(w, &st);
            ssize_t r = pwrite(w, "", 1, st.st_size);
            printf("reopen\t%s\tok\tseals=%d\tpwrite=%s%d\n", now, seals, r < 0 ? "!" : "", r < 0 ? errno : 0);
        } else {
            printf("reopen\t%s\tok\n", now);
        }
        close(w);
    }
    printf("done\n");
    return 0;
}
