/* The kernel calls pycontain needs that Python 3.11's os module does not offer.
 * Each is a thin wrapper: it returns what the kernel returns (-1 and errno on failure);
 * pycontain/syscalls.py turns failures into OSError naming the call. */
#include <sys/types.h>

/* clone(2) with fork semantics (no new stack): returns 0 in the child, the child's pid
 * in the parent. flags are CLONE_NEW* bits; SIGCHLD is added so the parent can wait(2). */
pid_t pc_clone(unsigned long flags);
int pc_unshare(int flags);
int pc_setns(int fd, int nstype);
/* pivot_root(2) has no glibc wrapper. */
int pc_pivot_root(const char *new_root, const char *put_old);
int pc_mount(const char *source, const char *target, const char *fstype,
             unsigned long flags, const char *data);
int pc_umount2(const char *target, int flags);
int pc_sethostname(const char *name, size_t len);
/* close_range(2): closes every fd in [first, last] in one call. */
int pc_close_range(unsigned int first, unsigned int last, unsigned int flags);
/* prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL): python-prctl has no ambient-set call. */
int pc_cap_ambient_clear_all(void);
/* openat2(2) (no glibc wrapper in Debian 12): how.flags/mode/resolve passed flat. */
int pc_openat2(int dirfd, const char *path, unsigned long long flags, unsigned long long mode,
               unsigned long long resolve);
/* The new mount API (Linux 5.2+, mount_setattr 5.12+): no glibc wrappers in Debian 12. */
int pc_open_tree(int dirfd, const char *path, unsigned int flags);
int pc_move_mount(int from_dirfd, const char *from_path, int to_dirfd, const char *to_path,
                  unsigned int flags);
int pc_mount_setattr(int dirfd, const char *path, unsigned int flags, unsigned long long attr_set,
                     unsigned long long attr_clr, unsigned long long propagation);
/* fstatfs(2)'s f_type (the filesystem's magic number) of an open descriptor; -1 and errno on failure. */
long pc_fstatfs_type(int fd);
/* keyctl(KEYCTL_JOIN_SESSION_KEYRING, name): a fresh session keyring (name NULL: anonymous). */
long pc_join_session_keyring(const char *name);
/* prctl(2) with one argument (PR_SET_DUMPABLE, PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS). */
int pc_prctl1(int option, unsigned long arg);
/* prctl(2) with two arguments (PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap). */
int pc_prctl2(int option, unsigned long arg2, unsigned long arg3);
/* prctl(PR_CAPBSET_DROP) for every capability whose bit is not set in keep, up to the kernel's last. */
int pc_capbset_keep(unsigned long long keep);
/* capset(2) (version 3) of this thread: the effective, permitted and inheritable sets as bit masks. */
int pc_capset(unsigned long long effective, unsigned long long permitted, unsigned long long inheritable);
/* seccomp(SECCOMP_SET_MODE_FILTER, flags, &{len, prog}): installs a compiled classic-BPF program of
 * `len` struct sock_filter (8 bytes each). The only seccomp call a container's child makes. */
int pc_seccomp_set_filter(const void *prog, unsigned short len, unsigned int flags);
/* bpf(2) for a cgroup v2 device filter (no glibc wrapper). Load: a program of `insn_cnt` struct bpf_insn
 * (8 bytes each); the verifier's log goes to log_buf when log_size > 0. Returns the program's fd. */
int pc_bpf_prog_load(unsigned int prog_type, const void *insns, unsigned int insn_cnt, const char *license,
                     char *log_buf, unsigned int log_size);
/* BPF_PROG_ATTACH / BPF_PROG_DETACH of a program to (from) the cgroup directory target_fd. */
int pc_bpf_prog_attach(int target_fd, int prog_fd, unsigned int attach_type, unsigned int flags);
int pc_bpf_prog_detach(int target_fd, int prog_fd, unsigned int attach_type);
/* BPF_PROG_QUERY: the ids of the programs attached to the cgroup itself (*count: room in, found out). */
int pc_bpf_prog_query(int target_fd, unsigned int attach_type, unsigned int *ids, unsigned int *count);
/* BPF_PROG_GET_FD_BY_ID: an fd of a loaded program, to detach it. */
int pc_bpf_prog_get_fd_by_id(unsigned int id);
/* libseccomp, used only to compile a spec's filter in the parent. It is loaded with dlopen on first
 * use, so the extension does not link it and a start without seccomp never loads it. These return
 * what libseccomp returns (0 or a negative errno), except as noted. */
/* Loads libseccomp.so.2: 0, or -1 with pc_scmp_error() saying why. */
int pc_scmp_open(void);
const char *pc_scmp_error(void);
/* seccomp_init: a filter context (NULL on failure). */
void *pc_scmp_init(unsigned int default_action);
void pc_scmp_release(void *ctx);
/* seccomp_arch_add of libseccomp's name for an arch ("x86_64"): 0 if added or already there,
 * 1 if this libseccomp does not know the name or it has the other byte order (not on this machine). */
int pc_scmp_arch_add(void *ctx, const char *name);
/* seccomp_syscall_resolve_name: the native number, -1 (__NR_SCMP_ERROR) for an unknown name. */
int pc_scmp_syscall(const char *name);
/* seccomp_rule_add_array with `count` comparisons given flat as (index, op, a, b) quadruples. */
int pc_scmp_rule_add(void *ctx, unsigned int action, int syscall_nr, unsigned int count,
                     const unsigned long long *args);
/* seccomp_export_bpf: writes the program to fd. */
int pc_scmp_export_bpf(void *ctx, int fd);
/* seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, level): 2 lays the syscalls out as a binary tree. */
int pc_scmp_optimize(void *ctx, unsigned int level);
/* User namespaces (pycontain/userns.py). mount_setattr(MOUNT_ATTR_IDMAP) of the detached mount fd:
 * its files then appear owned through the mapping of the user namespace userns_fd (an idmapped mount);
 * attr_set adds other MOUNT_ATTR_* bits. */
int pc_mount_setattr_idmap(int fd, unsigned int flags, unsigned long long attr_set, int userns_fd);
/* A user namespace with this uid_map and gid_map text, as an O_CLOEXEC descriptor, the caller staying
 * where it is: a child cloned with CLONE_NEWUSER holds it while the maps are written and
 * /proc/PID/ns/user is opened, then exits. -1 and errno on failure. */
int pc_userns_fd(const char *uid_map, const char *gid_map);
/* malloc_trim(3): hand the heap's free pages back to the kernel. The detached monitor calls it once its
 * container runs: what the setup allocated and freed would otherwise stay in its RSS for the container's
 * whole life. */
int pc_malloc_trim(void);
