#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <errno.h>
#include <linux/capability.h>
#include "syscalls.h"

pid_t pc_clone(unsigned long flags)
{
    /* The raw syscall with a NULL stack behaves like fork(2): the child continues on a
     * copy-on-write copy of the caller's stack. glibc's clone() wrapper insists on a new
     * stack and a function pointer, which cannot return into the Python interpreter. */
    return (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
}

int pc_unshare(int flags) { return unshare(flags); }
int pc_setns(int fd, int nstype) { return setns(fd, nstype); }

int pc_pivot_root(const char *new_root, const char *put_old)
{
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}

int pc_mount(const char *source, const char *target, const char *fstype,
             unsigned long flags, const char *data)
{
    return mount(source, target, fstype, flags, data);
}

int pc_umount2(const char *target, int flags) { return umount2(target, flags); }
int pc_sethostname(const char *name, size_t len) { return sethostname(name, len); }

int pc_close_range(unsigned int first, unsigned int last, unsigned int flags)
{
    return (int)syscall(SYS_close_range, first, last, flags);
}

int pc_cap_ambient_clear_all(void)
{
    return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
}

struct pc_open_how { unsigned long long flags, mode, resolve; };
struct pc_mount_attr { unsigned long long attr_set, attr_clr, propagation, userns_fd; };

int pc_openat2(int dirfd, const char *path, unsigned long long flags, unsigned long long mode,
               unsigned long long resolve)
{
    struct pc_open_how how = { flags, mode, resolve };
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

int pc_open_tree(int dirfd, const char *path, unsigned int flags)
{
    return (int)syscall(SYS_open_tree, dirfd, path, flags);
}

int pc_move_mount(int from_dirfd, const char *from_path, int to_dirfd, const char *to_path,
                  unsigned int flags)
{
    return (int)syscall(SYS_move_mount, from_dirfd, from_path, to_dirfd, to_path, flags);
}

int pc_mount_setattr(int dirfd, const char *path, unsigned int flags, unsigned long long attr_set,
                     unsigned long long attr_clr, unsigned long long propagation)
{
    struct pc_mount_attr attr = { attr_set, attr_clr, propagation, 0 };
    return (int)syscall(SYS_mount_setattr, dirfd, path, flags, &attr, sizeof attr);
}

long pc_join_session_keyring(const char *name)
{
    return syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, name);
}

int pc_prctl1(int option, unsigned long arg) { return prctl(option, arg, 0, 0, 0); }

int pc_prctl2(int option, unsigned long arg2, unsigned long arg3) { return prctl(option, arg2, arg3, 0, 0); }

int pc_capbset_keep(unsigned long long keep)
{
    for (int cap = 0; cap < 64; cap++) {
        if (keep & (1ULL << cap)) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL) return 0; /* past CAP_LAST_CAP: done */
            return -1;
        }
    }
    return 0;
}

int pc_capset(unsigned long long effective, unsigned long long permitted, unsigned long long inheritable)
{
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2] = {
        { (__u32)effective, (__u32)permitted, (__u32)inheritable },
        { (__u32)(effective >> 32), (__u32)(permitted >> 32), (__u32)(inheritable >> 32) },
    };
    return (int)syscall(SYS_capset, &header, data);
}
