#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <errno.h>
#include <linux/capability.h>
#include <dlfcn.h>
#include <malloc.h>
#include <linux/filter.h>
#include <linux/bpf.h>
#include <string.h>
#include <sys/vfs.h>
#include <seccomp.h> /* types and constants only: the library itself is dlopen'ed (pc_scmp_open) */
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

long pc_fstatfs_type(int fd)
{
    struct statfs st;
    if (fstatfs(fd, &st) < 0)
        return -1;
    return (long)st.f_type;
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

int pc_seccomp_set_filter(const void *prog, unsigned short len, unsigned int flags)
{
    struct sock_fprog fprog = { len, (struct sock_filter *)prog };
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
}

/* bpf(2): union bpf_attr is zeroed first, since the kernel refuses a non-zero byte in any field it does
 * not know. Pointers travel as 64-bit integers. */
static long pc_bpf(int cmd, union bpf_attr *attr) { return syscall(SYS_bpf, cmd, attr, sizeof *attr); }

int pc_bpf_prog_load(unsigned int prog_type, const void *insns, unsigned int insn_cnt, const char *license,
                     char *log_buf, unsigned int log_size)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = prog_type;
    attr.insns = (__u64)(unsigned long)insns;
    attr.insn_cnt = insn_cnt;
    attr.license = (__u64)(unsigned long)license;
    if (log_buf && log_size) {
        attr.log_buf = (__u64)(unsigned long)log_buf;
        attr.log_size = log_size;
        attr.log_level = 1;
    }
    return (int)pc_bpf(BPF_PROG_LOAD, &attr);
}

int pc_bpf_prog_attach(int target_fd, int prog_fd, unsigned int attach_type, unsigned int flags)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.target_fd = (__u32)target_fd;
    attr.attach_bpf_fd = (__u32)prog_fd;
    attr.attach_type = attach_type;
    attr.attach_flags = flags;
    return (int)pc_bpf(BPF_PROG_ATTACH, &attr);
}

int pc_bpf_prog_detach(int target_fd, int prog_fd, unsigned int attach_type)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.target_fd = (__u32)target_fd;
    attr.attach_bpf_fd = (__u32)prog_fd;
    attr.attach_type = attach_type;
    return (int)pc_bpf(BPF_PROG_DETACH, &attr);
}

int pc_bpf_prog_query(int target_fd, unsigned int attach_type, unsigned int *ids, unsigned int *count)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.query.target_fd = (__u32)target_fd;
    attr.query.attach_type = attach_type;
    attr.query.prog_ids = (__u64)(unsigned long)ids;
    attr.query.prog_cnt = *count;
    int rc = (int)pc_bpf(BPF_PROG_QUERY, &attr);
    *count = attr.query.prog_cnt;
    return rc;
}

int pc_bpf_prog_get_fd_by_id(unsigned int id)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_id = id;
    return (int)pc_bpf(BPF_PROG_GET_FD_BY_ID, &attr);
}

/* pycontain/cgroups/v2.py passes these as plain integers and encodes struct bpf_insn itself. */
_Static_assert(BPF_PROG_TYPE_CGROUP_DEVICE == 15 && BPF_CGROUP_DEVICE == 6 && BPF_F_ALLOW_MULTI == 2 &&
               BPF_DEVCG_DEV_BLOCK == 1 && BPF_DEVCG_DEV_CHAR == 2 && BPF_DEVCG_ACC_MKNOD == 1 &&
               BPF_DEVCG_ACC_READ == 2 && BPF_DEVCG_ACC_WRITE == 4 && sizeof(struct bpf_insn) == 8,
               "bpf constants changed");

/* pycontain/oci/seccomp.py passes these numbers as plain integers: fail the build if a header ever
 * disagrees with the values it was written against (libseccomp's actions are the kernel's own). */
_Static_assert(SCMP_CMP_NE == 1 && SCMP_CMP_LT == 2 && SCMP_CMP_LE == 3 && SCMP_CMP_EQ == 4 &&
               SCMP_CMP_GE == 5 && SCMP_CMP_GT == 6 && SCMP_CMP_MASKED_EQ == 7, "scmp_compare changed");
_Static_assert(SCMP_ACT_KILL_PROCESS == 0x80000000U && SCMP_ACT_KILL_THREAD == 0 && SCMP_ACT_TRAP == 0x00030000U &&
               SCMP_ACT_ERRNO(0) == 0x00050000U && SCMP_ACT_TRACE(0) == 0x7ff00000U && SCMP_ACT_LOG == 0x7ffc0000U &&
               SCMP_ACT_ALLOW == 0x7fff0000U, "libseccomp action values changed");

/* Linking libseccomp would make every start's dlopen of this extension load it too (and fail without
 * it); only a spec with linux.seccomp needs it, so it is looked up once, on first use. The pointer
 * types come from seccomp.h itself. */
static struct {
    int loaded;
    char error[256];
    __typeof__(seccomp_init) *init;
    __typeof__(seccomp_release) *release;
    __typeof__(seccomp_arch_resolve_name) *arch_resolve_name;
    __typeof__(seccomp_arch_add) *arch_add;
    __typeof__(seccomp_syscall_resolve_name) *syscall_resolve_name;
    __typeof__(seccomp_rule_add_array) *rule_add_array;
    __typeof__(seccomp_export_bpf) *export_bpf;
    __typeof__(seccomp_attr_set) *attr_set;
} scmp;

static void *scmp_symbol(void *handle, const char *name)
{
    void *found = dlsym(handle, name);
    if (!found && !scmp.error[0])
        snprintf(scmp.error, sizeof scmp.error, "libseccomp.so.2 has no %s", name);
    return found;
}

int pc_scmp_open(void)
{
    if (scmp.loaded) return 0;
    scmp.error[0] = 0;
    void *handle = dlopen("libseccomp.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        snprintf(scmp.error, sizeof scmp.error, "%s", dlerror());
        return -1;
    }
    scmp.init = scmp_symbol(handle, "seccomp_init");
    scmp.release = scmp_symbol(handle, "seccomp_release");
    scmp.arch_resolve_name = scmp_symbol(handle, "seccomp_arch_resolve_name");
    scmp.arch_add = scmp_symbol(handle, "seccomp_arch_add");
    scmp.syscall_resolve_name = scmp_symbol(handle, "seccomp_syscall_resolve_name");
    scmp.rule_add_array = scmp_symbol(handle, "seccomp_rule_add_array");
    scmp.export_bpf = scmp_symbol(handle, "seccomp_export_bpf");
    scmp.attr_set = scmp_symbol(handle, "seccomp_attr_set");
    if (scmp.error[0]) {
        dlclose(handle);
        return -1;
    }
    scmp.loaded = 1;
    return 0;
}

const char *pc_scmp_error(void) { return scmp.error; }

void *pc_scmp_init(unsigned int default_action) { return scmp.init(default_action); }
void pc_scmp_release(void *ctx) { scmp.release(ctx); }

int pc_scmp_arch_add(void *ctx, const char *name)
{
    uint32_t token = scmp.arch_resolve_name(name);
    if (token == 0) return 1;
    int rc = scmp.arch_add(ctx, token);
    if (rc == -EEXIST) return 0; /* seccomp_init already added the native arch */
    /* The other byte order than the native arch's (a filter holds one): no process on this machine
     * can make that arch's syscalls, so there is nothing to filter. */
    if (rc == -EDOM) return 1;
    return rc;
}

int pc_scmp_syscall(const char *name) { return scmp.syscall_resolve_name(name); }

int pc_scmp_rule_add(void *ctx, unsigned int action, int syscall_nr, unsigned int count,
                     const unsigned long long *args)
{
    struct scmp_arg_cmp cmp[6];
    if (count > 6) return -EINVAL;
    for (unsigned int i = 0; i < count; i++) {
        cmp[i].arg = (unsigned int)args[4 * i];
        cmp[i].op = (enum scmp_compare)args[4 * i + 1];
        cmp[i].datum_a = args[4 * i + 2];
        cmp[i].datum_b = args[4 * i + 3];
    }
    return scmp.rule_add_array(ctx, action, syscall_nr, count, cmp);
}

int pc_scmp_export_bpf(void *ctx, int fd) { return scmp.export_bpf(ctx, fd); }

int pc_scmp_optimize(void *ctx, unsigned int level)
{
    return scmp.attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, level);
}

/* ---------------------------------------------------------------- user namespaces (pycontain/userns.py) */

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

int pc_mount_setattr_idmap(int fd, unsigned int flags, unsigned long long attr_set, int userns_fd)
{
    struct pc_mount_attr attr = { attr_set | 0x00100000 /* MOUNT_ATTR_IDMAP */, 0, 0, (unsigned long long)userns_fd };
    return (int)syscall(SYS_mount_setattr, fd, "", flags, &attr, sizeof attr);
}

/* The holder of pc_userns_fd: it shares the caller's memory (CLONE_VM, but not the descriptor table), so
 * it makes only raw system calls (errno is shared): it blocks reading the pipe until the caller is done
 * (EOF) and returns, which ends it. Every signal is blocked in it. */
static int pc_userns_hold(void *arg)
{
    int *pipefd = arg;
    char c;
    syscall(SYS_close, pipefd[1]);  /* its own copy of the write end, or the read below never ends */
    syscall(SYS_read, pipefd[0], &c, 1);
    return 0;
}

static int pc_write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)len ? 0 : -1;
}

int pc_userns_fd(const char *uid_map, const char *gid_map)
{
    /* ~60 us: a CLONE_VM child on a small stack, instead of a fork of the whole Python process (~1.3 ms). */
    enum { STACK = 64 * 1024 };
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) return -1;
    char *stack = malloc(STACK);
    if (!stack) { close(pipefd[0]); close(pipefd[1]); errno = ENOMEM; return -1; }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pid_t pid = clone(pc_userns_hold, stack + STACK, CLONE_NEWUSER | CLONE_VM | SIGCHLD, pipefd);
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    int fd = -1;
    if (pid > 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
        if (pc_write_file(path, uid_map) == 0) {
            snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
            if (pc_write_file(path, gid_map) == 0) {
                snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
                fd = open(path, O_RDONLY | O_CLOEXEC);
            }
        }
        saved = errno;
    }
    close(pipefd[1]);  /* the holder's read returns: it exits */
    if (pid > 0) while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR) ;
    close(pipefd[0]);
    free(stack);
    errno = saved;
    return fd;
}

int pc_malloc_trim(void)
{
    return malloc_trim(0);
}
