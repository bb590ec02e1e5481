/* One call per argument, each reported on its own line as the kernel answered it:
 *   sysprobe ACTION[=ARG]...  ->  "ACTION[=ARG] ok [detail]" or "ACTION[=ARG] errno N NAME"
 * so a test can tell "refused" (EPERM, EROFS) from "never reached the call" (ENOENT, ENOSYS).
 * The probes change nothing that outlives them: a mount is undone, a node unlinked, a socket closed,
 * and settimeofday/clock_settime set nothing or the time it already is. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define KEYCTL_GET_KEYRING_ID 0
#define KEY_SPEC_SESSION_KEYRING -3
#define VFS_CAP_REVISION_2 0x02000000
#define VFS_CAP_FLAGS_EFFECTIVE 0x000001

static const char *action;

static int report(long r) {
    if (r < 0) {
        int e = errno;
        printf("%s errno %d %s\n", action, e, strerrorname_np(e) ? strerrorname_np(e) : "?");
        return 1;
    }
    printf("%s ok\n", action);
    return 0;
}

/* "/proc/self/status" lines that name capabilities, ids and filters, prefixed with the action. */
static void status(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[512];
    if (!f) {
        report(-1);
        return;
    }
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "Cap", 3) || !strncmp(line, "Uid", 3) || !strncmp(line, "NoNewPrivs", 10) ||
            !strncmp(line, "Seccomp:", 8))
            printf("%s %s", action, line);
    fclose(f);
}

/* security.capability, revision 2: permitted and inheritable masks of the low 32 capabilities. */
static long set_file_caps(const char *path, unsigned permitted, unsigned inheritable) {
    unsigned data[5] = {VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE, permitted, inheritable, 0, 0};
    return setxattr(path, "security.capability", data, sizeof data, 0);
}

static void run(const char *arg) {
    char name[64];
    const char *eq = strchr(arg, '=');
    const char *val = eq ? eq + 1 : "";
    size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
    if (n >= sizeof name) n = sizeof name - 1;
    memcpy(name, arg, n);
    name[n] = 0;
    action = arg;
    errno = 0;
    if (!strcmp(name, "mount")) {
        mkdir("/tmp/sysprobe-mnt", 0700);
        if (!report(mount("sysprobe", "/tmp/sysprobe-mnt", "tmpfs", 0, "size=4k"))) umount("/tmp/sysprobe-mnt");
        rmdir("/tmp/sysprobe-mnt");
    } else if (!strcmp(name, "unshare_user") || !strcmp(name, "unshare_mnt")) {
        /* in a child: the namespace it makes must not change what the next probes see */
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            report(unshare(!strcmp(name, "unshare_user") ? CLONE_NEWUSER : CLONE_NEWNS));
            fflush(stdout);
            _exit(0);
        }
        waitpid(pid, NULL, 0);
    } else if (!strcmp(name, "keyctl")) {
        report(syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
    } else if (!strcmp(name, "add_key")) {
        report(syscall(SYS_add_key, "user", "sysprobe", "x", 1, KEY_SPEC_SESSION_KEYRING));
    } else if (!strcmp(name, "bpf")) {
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.map_type = BPF_MAP_TYPE_ARRAY;
        attr.key_size = 4;
        attr.value_size = 4;
        attr.max_entries = 1;
        long fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
        if (!report(fd)) close((int)fd);
    } else if (!strcmp(name, "init_module")) {
        report(syscall(SYS_init_module, NULL, 0, ""));
    } else if (!strcmp(name, "finit_module")) {
        report(syscall(SYS_finit_module, -1, "", 0)); /* EBADF once past the permission checks */
    } else if (!strcmp(name, "delete_module")) {
        report(syscall(SYS_delete_module, "sysprobe_no_such_module", O_NONBLOCK));
    } else if (!strcmp(name, "open_wr")) {
        int fd = open(val, O_WRONLY | O_CLOEXEC); /* opening is the test; nothing is ever written */
        if (!report(fd)) close(fd);
    } else if (!strcmp(name, "mknod_blk")) {
        /* a block node for loop0 (7:0); if made, whether it can be opened, then it goes */
        if (!report(mknod(val, S_IFBLK | 0600, makedev(7, 0)))) {
            action = "mknod_blk_open";
            int fd = open(val, O_RDONLY | O_CLOEXEC);
            if (!report(fd)) close(fd);
            unlink(val);
        }
    } else if (!strcmp(name, "raw_inet")) {
        int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
        if (!report(fd)) close(fd);
    } else if (!strcmp(name, "packet")) {
        int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
        if (!report(fd)) close(fd);
    } else if (!strcmp(name, "sethostname")) {
        report(sethostname(val, strlen(val)));
    } else if (!strcmp(name, "settimeofday")) {
        /* both NULL: only the permission check runs (CAP_SYS_TIME); with it, the call changes nothing */
        report(syscall(SYS_settimeofday, NULL, NULL));
    } else if (!strcmp(name, "clock_settime")) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        report(syscall(SYS_clock_settime, CLOCK_REALTIME, &now));
    } else if (!strcmp(name, "setfcap")) {
        /* setfcap=PATH:PERMITTED:INHERITABLE (hex masks) */
        char path[256];
        unsigned p = 0, i = 0;
        if (sscanf(val, "%255[^:]:%x:%x", path, &p, &i) != 3) {
            errno = EINVAL;
            report(-1);
        } else {
            report(set_file_caps(path, p, i));
        }
    } else if (!strcmp(name, "fds")) {
        /* every descriptor this process holds but the directory being read: "fds N LINK" */
        DIR *d = opendir("/proc/self/fd");
        if (!d) {
            report(-1);
        } else {
            struct dirent *e;
            while ((e = readdir(d))) {
                char link[300], target[512];
                if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d)) continue;
                snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
                ssize_t len = readlink(link, target, sizeof target - 1);
                target[len < 0 ? 0 : len] = 0;
                printf("fds %s %s\n", e->d_name, len < 0 ? "?" : target);
            }
            closedir(d);
            printf("fds ok\n");
        }
    } else if (!strcmp(name, "cwd")) {
        char buf[512];
        if (getcwd(buf, sizeof buf)) printf("cwd ok %s\n", buf);
        else report(-1);
    } else if (!strcmp(name, "status")) {
        status();
    } else {
        printf("%s unknown action\n", action);
    }
    fflush(stdout);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) run(argv[i]);
    return 0;
}
