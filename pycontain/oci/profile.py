"""Seccomp profiles in the Docker/OCI profile format: pycontain's default one, a user's file, and the
step that turns either into the spec's `linux.seccomp` for one container.

    default() -> dict                        the project's profile (below), a fresh copy
    load(path) -> dict                       `--security-opt seccomp=FILE`: read and checked, or UsageError
    check(profile, source)                   the same checks for a profile already in memory
    resolve(profile, caps, arch=None)        profile + the container's capabilities -> linux.seccomp

A profile is wider than a spec's filter: its rules carry conditions (`includes`/`excludes` on
capabilities, architectures and the kernel version) and `archMap` lists the sub-architectures of
each machine. resolve() settles every condition for one container on this machine, so the spec holds
only plain rules, the same ones for the same inputs (the compiled program is cached on them:
seccomp.compile_cached).

The default profile is at least as strict as Docker's: everything not listed fails with EPERM. It is
plain data here (tuples of names, cheap to import on the start path), grouped by what the calls are
for, each group saying why it is allowed or why it is not.
"""

from __future__ import annotations

import os

from pycontain.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

NAME = "default"  # what inspect and --explain call the project's profile
MAX_PROFILE_BYTES = 1 << 20  # a real profile is ~20 KB; more is a mistake, not a profile
ENOSYS = 38
# clone(2)'s namespace flags: NEWNS 0x20000, NEWCGROUP 0x2000000, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
# (0x4000000 .. 0x40000000). CLONE_NEWTIME (0x80) is absent: in clone(2) that bit is part of the exit
# signal, and a time namespace can only be made by unshare or clone3, which need CAP_SYS_ADMIN here.
CLONE_NAMESPACES = 0x7E020000

# ---------------------------------------------------------------- the default profile, as data

# Always allowed: what ordinary programs (glibc and musl start-up, shells, busybox, package managers,
# interpreters, servers) call. Each of these either touches only the caller's own process, files and
# descriptors, or is checked by the kernel against the container's capabilities and namespaces anyway.
_ALWAYS = (
    # Reading and writing through descriptors, and the descriptors themselves.
    "read write readv writev pread64 pwrite64 preadv preadv2 pwritev pwritev2 "
    "open openat openat2 creat close close_range lseek _llseek dup dup2 dup3 "
    "fcntl fcntl64 flock fsync fdatasync sync syncfs sync_file_range truncate "
    "truncate64 ftruncate ftruncate64 fallocate fadvise64 fadvise64_64 readahead "
    "copy_file_range sendfile sendfile64 splice tee vmsplice ioctl cachestat "
    # Names, metadata and directories. mknod: the kernel wants CAP_MKNOD and the device cgroup for devices.
    "stat stat64 lstat lstat64 fstat fstat64 newfstatat fstatat64 statx statfs "
    "statfs64 fstatfs fstatfs64 access faccessat faccessat2 readlink readlinkat "
    "getdents getdents64 getcwd chdir fchdir umask chmod fchmod fchmodat fchmodat2 "
    "chown chown32 fchown fchown32 fchownat lchown lchown32 utime utimes "
    "utimensat utimensat_time64 futimesat mkdir mkdirat mknod mknodat rmdir rename "
    "renameat renameat2 link linkat symlink symlinkat unlink unlinkat "
    "name_to_handle_at "  # only a handle: opening one (open_by_handle_at) is the dangerous half
    "getxattr lgetxattr fgetxattr setxattr lsetxattr fsetxattr listxattr llistxattr "
    "flistxattr removexattr lremovexattr fremovexattr "
    "getxattrat setxattrat listxattrat removexattrat file_getattr file_setattr "
    # The process's own memory. mlock is bounded by RLIMIT_MEMLOCK; memfd_secret and mseal only take
    # memory away from everyone, the caller included.
    "brk mmap mmap2 munmap mremap mprotect madvise mincore msync mlock mlock2 "
    "mlockall munlock munlockall remap_file_pages membarrier memfd_create memfd_secret "
    "pkey_alloc pkey_free pkey_mprotect map_shadow_stack mseal "
    # Processes and threads (clone and clone3: see default()). Signals reach only processes of the
    # container's own pid namespace; prctl's privileged operations check capabilities.
    "fork vfork execve execveat exit exit_group wait4 waitid waitpid kill tkill "
    "tgkill getpid getppid gettid getpgid setpgid getpgrp getsid setsid "
    "set_tid_address prctl get_thread_area set_thread_area rseq set_robust_list "
    "get_robust_list restart_syscall pidfd_open pidfd_send_signal process_mrelease "
    "capget capset uname sysinfo getrusage getrlimit setrlimit prlimit64 ugetrlimit "
    "times getrandom getcpu "
    # Sandboxing a process further is always welcome: nested filters and Landlock only ever take away.
    "seccomp landlock_create_ruleset landlock_add_rule landlock_restrict_self "
    # Scheduling and priorities of the container's own processes (raising them needs CAP_SYS_NICE).
    "sched_yield sched_getaffinity sched_setaffinity sched_getattr sched_setattr "
    "sched_getparam sched_setparam sched_getscheduler sched_setscheduler sched_get_priority_max "
    "sched_get_priority_min sched_rr_get_interval sched_rr_get_interval_time64 getpriority "
    "setpriority ioprio_get ioprio_set "
    # Futexes: every thread library and lock.
    "futex futex_time64 futex_waitv futex_wait futex_wake futex_requeue "
    # User and group ids: the kernel checks CAP_SETUID/CAP_SETGID.
    "getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32 getresuid "
    "getresuid32 getresgid getresgid32 getgroups getgroups32 setuid setuid32 setgid "
    "setgid32 setreuid setreuid32 setregid setregid32 setresuid setresuid32 setresgid "
    "setresgid32 setgroups setgroups32 setfsuid setfsuid32 setfsgid setfsgid32 "
    # Signals.
    "rt_sigaction rt_sigprocmask rt_sigreturn rt_sigsuspend rt_sigpending rt_sigtimedwait "
    "rt_sigtimedwait_time64 rt_sigqueueinfo rt_tgsigqueueinfo sigaltstack signalfd signalfd4 "
    "sigreturn sigprocmask pause "
    # Clocks and timers. adjtimex and clock_adjtime also read the clock; changing it through them needs
    # CAP_SYS_TIME, which the kernel checks (their argument is a structure a filter cannot look into).
    "clock_gettime clock_gettime64 clock_getres clock_getres_time64 clock_nanosleep "
    "clock_nanosleep_time64 nanosleep gettimeofday time alarm getitimer setitimer "
    "timer_create timer_delete timer_gettime timer_gettime64 timer_settime timer_settime64 "
    "timer_getoverrun timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime "
    "timerfd_settime64 adjtimex clock_adjtime clock_adjtime64 "
    # Waiting for events.
    "poll ppoll ppoll_time64 select _newselect pselect6 pselect6_time64 epoll_create "
    "epoll_create1 epoll_ctl epoll_ctl_old epoll_wait epoll_wait_old epoll_pwait "
    "epoll_pwait2 eventfd eventfd2 inotify_init inotify_init1 inotify_add_watch "
    "inotify_rm_watch fanotify_mark "  # a mark needs a group, and fanotify_init needs CAP_SYS_ADMIN
    # Pipes and sockets (socket itself: SOCKET_FAMILIES). socketcall is not here: its arguments are in
    # memory, where no filter can see the address family; 32-bit programs for kernels >= 4.3 call
    # socket, connect, ... directly.
    "pipe pipe2 socketpair bind connect listen accept accept4 getsockname "
    "getpeername getsockopt setsockopt shutdown send sendto sendmsg sendmmsg recv "
    "recvfrom recvmsg recvmmsg recvmmsg_time64 "
    # POSIX AIO (io_uring is not: see NEVER).
    "io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents io_pgetevents_time64 "
    # System V and POSIX IPC, private to the container's ipc namespace.
    "ipc msgget msgsnd msgrcv msgctl semget semop semtimedop semtimedop_time64 "
    "semctl shmget shmat shmdt shmctl mq_open mq_unlink mq_timedsend mq_timedsend_time64 "
    "mq_timedreceive mq_timedreceive_time64 mq_notify mq_getsetattr "
    # Reading the container's own mount table (statmount/listmount see only the caller's mount namespace).
    "statmount listmount "
)
# One string constant, split here: ~400 separate strings made the module 0.3 ms slower to load.
ALWAYS = tuple(_ALWAYS.split())

# Calls of one architecture: libseccomp knows each name only there, so they are rules of their own.
ARCH_SPECIFIC = (
    (("amd64", "x32", "x86"), ("arch_prctl",)),  # thread pointer (TLS), CPUID faulting, shadow stacks
    (("arm", "arm64"), ("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
                        "cacheflush", "set_tls")),
    (("ppc64le",), ("sync_file_range2", "swapcontext")),
    (("s390", "s390x"), ("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr")),
    (("riscv64",), ("riscv_flush_icache",)),
)

# Allowed only to a container that holds the capability (all of them, when several are named): each
# capability is what the kernel checks for the call anyway, and without it the call is only attack
# surface. The new mount API, unshare and setns also need CAP_SYS_ADMIN to do anything at all.
WITH_CAPS = (
    (("SYS_ADMIN",), (
        "mount", "umount", "umount2", "pivot_root", "unshare", "setns", "sethostname", "setdomainname",
        "clone", "clone3",  # with any flags, namespaces included (without SYS_ADMIN: see default())
        "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "open_tree_attr", "mount_setattr",
        "fanotify_init", "perf_event_open",
    )),
    (("PERFMON",), ("perf_event_open",)),  # excludes SYS_ADMIN (below): one rule per call
    (("DAC_READ_SEARCH",), ("open_by_handle_at",)),  # "shocker": opens any inode of the host's filesystem
    (("SYS_BOOT",), ("reboot",)),  # in a pid namespace: ends the container's init
    (("SYS_TIME",), ("settimeofday", "stime", "clock_settime", "clock_settime64")),  # the host's clock
    (("SYS_CHROOT",), ("chroot",)),
    (("SYS_PTRACE",), ("kcmp", "pidfd_getfd", "process_madvise")),
    (("SYS_RAWIO",), ("iopl", "ioperm")),  # I/O ports of the host's hardware
    (("SYS_NICE",), ("mbind", "get_mempolicy", "set_mempolicy", "set_mempolicy_home_node")),  # NUMA placement
)

# ptrace and reading another process's memory: allowed from kernel 4.8 on, where a traced process can no
# longer step around its own seccomp filter. Debuggers and strace inside a container need them; they reach
# only the container's own processes (the pid namespace, and ptrace's own permission checks).
PTRACE = ("ptrace", "process_vm_readv", "process_vm_writev")
PTRACE_MIN_KERNEL = "4.8"

# personality(2) values that change nothing dangerous: PER_LINUX (0), PER_LINUX32 (8), UNAME26 (0x20000)
# and both (0x20008), and 0xffffffff, which only asks for the current value. Not ADDR_NO_RANDOMIZE
# (0x40000), which turns address space randomisation off for what the process executes next.
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# socket(2) address families allowed: all but AF_ALG (38: the kernel's crypto API, a steady source of
# kernel bugs) and AF_VSOCK (40: talks to the hypervisor or the host, outside every namespace).
# libseccomp cannot AND two tests of one argument, so the allowed set is written as ranges, each one
# rule, and each a test of all 64 bits: the kernel reads the family as a 32-bit int, so a test of
# "!= 40" would let 0x1_00000028 through as AF_VSOCK, where "< 38" or a masked match cannot be fooled.
# Families up to 63 (AF_MAX is 46 in 6.x) leave room for new ones; above that socket() fails anyway.
SOCKET_FAMILIES = (
    ("SCMP_CMP_LT", 38, 0),  # 0 .. 37: AF_UNSPEC, AF_UNIX, AF_INET, ... AF_CAIF
    ("SCMP_CMP_EQ", 39, 0),  # AF_NFC
    ("SCMP_CMP_EQ", 41, 0),  # AF_KCM
    ("SCMP_CMP_MASKED_EQ", ~1 & 0xFFFFFFFFFFFFFFFF, 42),  # 42, 43: AF_QIPCRTR, AF_SMC
    ("SCMP_CMP_MASKED_EQ", ~3 & 0xFFFFFFFFFFFFFFFF, 44),  # 44 .. 47: AF_XDP, AF_MCTP, ...
    ("SCMP_CMP_MASKED_EQ", ~15 & 0xFFFFFFFFFFFFFFFF, 48),  # 48 .. 63
)

# Never allowed, whatever the capabilities (--privileged, which has no filter, or a profile of one's own
# opens them). Not listed anywhere above, so the default action refuses them; the list is here so the
# tests can hold the profile to it.
_NEVER = (
    # The kernel keyring is not namespaced: keys of the host and of other containers.
    "keyctl add_key request_key "
    # Programs in the kernel, and their recurring verifier bugs.
    "bpf "
    # Page faults handled in user space: the classic way to win kernel races.
    "userfaultfd "
    # io_uring: a second system call interface that seccomp does not see into.
    "io_uring_setup io_uring_enter io_uring_register "
    # Replacing or extending the host's kernel.
    "kexec_load kexec_file_load init_module finit_module delete_module create_module "
    "query_module get_kernel_syms "
    # Host-wide switches and logs: process accounting, swap, quotas, the kernel log, terminals.
    "acct swapon swapoff quotactl quotactl_fd syslog vhangup "
    # Obsolete interfaces, or ones that reach the host's hardware or other processes' memory placement.
    "lookup_dcookie nfsservctl _sysctl uselib ustat sysfs bdflush pciconfig_read pciconfig_write "
    "pciconfig_iobase move_pages migrate_pages uretprobe lsm_set_self_attr "
    # 16-bit segments and virtual 8086 mode: only DOS and Windows emulators use them, and their kernel
    # code has had its share of holes.
    "modify_ldt vm86 vm86old "
    # The 32-bit x86 socket multiplexer: see the pipes and sockets of _ALWAYS.
    "socketcall "
)
NEVER = tuple(_NEVER.split())

# Names above newer than the libseccomp this profile was tested with (2.5.4 as Debian 12 patches it), by
# the kernel that added them: a libseccomp that does not know a name skips it (seccomp.compile), so
# they take effect once it does. The unit tests accept exactly these unknown names: any other is a typo.
NEWER = {
    "statmount": "6.8", "listmount": "6.8", "lsm_set_self_attr": "6.8", "mseal": "6.10", "uretprobe": "6.11",
    "getxattrat": "6.13", "setxattrat": "6.13", "listxattrat": "6.13", "removexattrat": "6.13",
    "open_tree_attr": "6.15", "file_getattr": "6.17", "file_setattr": "6.17",
}

# The sub-architectures each machine runs (32-bit programs on a 64-bit kernel).
ARCH_MAP = (
    ("SCMP_ARCH_X86_64", ("SCMP_ARCH_X86", "SCMP_ARCH_X32")),
    ("SCMP_ARCH_AARCH64", ("SCMP_ARCH_ARM",)),
    ("SCMP_ARCH_PPC64LE", ()),
    ("SCMP_ARCH_S390X", ("SCMP_ARCH_S390",)),
    ("SCMP_ARCH_RISCV64", ()),
)


def default() -> dict[str, Any]:
    """The project's default profile in the Docker profile format (a new dict each call: callers may
    change theirs)."""
    def rule(names: Iterable[str], action: str = "SCMP_ACT_ALLOW", **more: Any) -> dict[str, Any]:
        return {"names": list(names), "action": action, **{k: v for k, v in more.items() if v is not None}}

    def ns_free_clone(index: int) -> dict[str, Any]:
        return {"index": index, "op": "SCMP_CMP_MASKED_EQ", "value": CLONE_NAMESPACES, "valueTwo": 0}

    s390 = ["s390", "s390x"]
    no_admin = {"caps": ["CAP_SYS_ADMIN"]}
    syscalls = [rule(ALWAYS)]
    syscalls += [rule(["personality"], args=[{"index": 0, "op": "SCMP_CMP_EQ", "value": v}]) for v in PERSONALITIES]
    syscalls += [rule(["socket"], args=[{"index": 0, "op": op, "value": v, "valueTwo": v2}])
                 for op, v, v2 in SOCKET_FAMILIES]
    syscalls += [rule(names, includes={"arches": list(arches)}) for arches, names in ARCH_SPECIFIC]
    syscalls.append(rule(PTRACE, includes={"minKernel": PTRACE_MIN_KERNEL}))
    syscalls.append(rule(PTRACE, includes={"caps": ["CAP_SYS_PTRACE"]}, excludes={"minKernel": PTRACE_MIN_KERNEL}))
    # Without CAP_SYS_ADMIN: clone without namespace flags (the flags are the second argument on s390),
    # and clone3 fails with ENOSYS: its flags are in memory, out of a filter's sight, and ENOSYS is what
    # makes glibc and musl fall back to clone, where the flags can be checked.
    syscalls.append(rule(["clone"], args=[ns_free_clone(0)], excludes=dict(no_admin, arches=s390)))
    syscalls.append(rule(["clone"], args=[ns_free_clone(1)], includes={"arches": s390}, excludes=no_admin))
    syscalls.append(rule(["clone3"], "SCMP_ACT_ERRNO", errnoRet=ENOSYS, excludes=no_admin))
    for caps, names in WITH_CAPS:
        syscalls.append(rule(names, includes={"caps": [f"CAP_{c}" for c in caps]},
                             excludes=no_admin if caps == ("PERFMON",) else None))
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,  # EPERM, as Docker: "not allowed", which programs report clearly
        "archMap": [{"architecture": a, "subArchitectures": list(sub)} for a, sub in ARCH_MAP],
        "syscalls": syscalls,
    }


# ---------------------------------------------------------------- a user's profile

def load(path: str) -> dict[str, Any]:
    """`--security-opt seccomp=FILE`: the profile in FILE, checked (check()); UsageError naming the
    file and the field for anything wrong with it."""
    import json
    import stat

    where = f"seccomp profile {path}"
    try:
        # O_NONBLOCK: a FIFO or a device given by mistake must not hang the command.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise UsageError(f"{where}: cannot open it: {e.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"{where}: not a regular file")
        chunks, size = [], 0
        while size <= MAX_PROFILE_BYTES:
            chunk = os.read(fd, MAX_PROFILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise UsageError(f"{where}: cannot read it: {e.strerror}") from None
    finally:
        os.close(fd)
    if size > MAX_PROFILE_BYTES:
        raise UsageError(f"{where}: larger than {MAX_PROFILE_BYTES >> 20} MiB, which no seccomp profile is")
    try:
        profile = json.loads(b"".join(chunks).decode("utf-8"))
    except UnicodeDecodeError as e:
        raise UsageError(f"{where}: not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{where}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except (ValueError, RecursionError) as e:  # an integer too long to convert, nesting too deep
        raise UsageError(f"{where}: not usable JSON: {e}") from None
    check(profile, path)
    assert isinstance(profile, dict)
    return profile


class _Checker:
    """The checks of check(): each failure is one UsageError naming the profile and the field."""

    def __init__(self, source: str) -> None:
        from pycontain.oci import seccomp

        self.source, self.sc = source, seccomp

    def fail(self, field: str, why: str) -> UsageError:
        return UsageError(f"seccomp profile {self.source}: {field}: {why}")

    def obj(self, value: Any, field: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(field, "must be an object")
        return value

    def strings(self, value: Any, field: str, allowed: Iterable[str] | None = None,
                what: str = "") -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and v and "\0" not in v for v in value):
            raise self.fail(field, "must be a list of strings")
        if allowed is not None:
            allowed = set(allowed)
            for i, v in enumerate(value):
                if v not in allowed:
                    raise self.fail(f"{field}[{i}]", f"unknown {what} {v!r}")
        return value

    def uint(self, value: Any, field: str, high: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(field, "must be an integer")
        if not 0 <= value <= high:
            raise self.fail(field, f"{value} is out of range (0..{high})")

    def action(self, obj: dict[str, Any], field: str, action_key: str, errno_key: str) -> None:
        name = obj.get(action_key)
        where = f"{field}.{action_key}" if field else action_key
        if not isinstance(name, str):
            raise self.fail(where, "must be a string naming an action (SCMP_ACT_...)")
        if name == "SCMP_ACT_NOTIFY":
            raise self.fail(where, "SCMP_ACT_NOTIFY needs a seccomp notification agent, which pycontain "
                                   "does not support")
        if name not in self.sc.ACTIONS:
            raise self.fail(where, f"unknown action {name!r} (known: {', '.join(self.sc.ACTIONS)})")
        errno_ret = obj.get(errno_key)
        if errno_ret is not None:
            where = f"{field}.{errno_key}" if field else errno_key
            if name not in self.sc.WITH_ERRNO:
                raise self.fail(where, f"only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take one, not {name}")
            self.uint(errno_ret, where, self.sc.ERRNO_MAX if name == "SCMP_ACT_ERRNO" else 0xFFFF)

    def condition(self, value: Any, field: str) -> None:
        cond = self.obj(value, field)
        self.strings(cond.get("caps"), f"{field}.caps")
        self.strings(cond.get("arches"), f"{field}.arches")
        version = cond.get("minKernel")
        if version not in (None, "") and _version(version) is None:
            raise self.fail(f"{field}.minKernel", 'must be a kernel version such as "4.8"')

    def args(self, value: Any, field: str) -> None:
        if value is None:
            return
        if not isinstance(value, list):
            raise self.fail(field, "must be a list")
        for i, arg in enumerate(value):
            where = f"{field}[{i}]"
            if not isinstance(arg, dict):
                raise self.fail(where, "must be an object")
            self.uint(arg.get("index"), f"{where}.index", self.sc.MAX_ARGS - 1)
            op = arg.get("op")
            if not isinstance(op, str) or op not in self.sc.OPS:  # a list or an object is unhashable
                raise self.fail(f"{where}.op", f"unknown operator {op!r}" if isinstance(op, str)
                                else "must be a string naming an operator (SCMP_CMP_...)")
            self.uint(arg.get("value"), f"{where}.value", 2**64 - 1)
            if arg.get("valueTwo") is not None:
                self.uint(arg.get("valueTwo"), f"{where}.valueTwo", 2**64 - 1)

    def profile(self, profile: Any) -> None:
        if not isinstance(profile, dict):
            raise UsageError(f"seccomp profile {self.source}: must be a JSON object")
        for key in ("listenerPath", "listenerMetadata"):
            if profile.get(key):
                raise self.fail(key, "seccomp notification agents are not supported by pycontain")
        self.action(profile, "", "defaultAction", "defaultErrnoRet")
        arches = self.sc.ARCHES  # what seccomp.compile takes
        self.strings(profile.get("architectures"), "architectures", arches, "architecture")
        arch_map = profile.get("archMap")
        if arch_map is not None:
            if profile.get("architectures"):
                raise self.fail("archMap", "a profile has either architectures or archMap, not both")
            if not isinstance(arch_map, list):
                raise self.fail("archMap", "must be a list")
            for i, entry in enumerate(arch_map):
                where = f"archMap[{i}]"
                entry = self.obj(entry, where)
                arch = entry.get("architecture")
                if not isinstance(arch, str):
                    raise self.fail(f"{where}.architecture", "must be a string naming an architecture")
                if arch not in arches:
                    raise self.fail(f"{where}.architecture", f"unknown architecture {arch!r}")
                self.strings(entry.get("subArchitectures"), f"{where}.subArchitectures", arches, "architecture")
        self.strings(profile.get("flags"), "flags", self.sc.FLAGS, "flag")
        calls = profile.get("syscalls")
        if calls is not None and not isinstance(calls, list):
            raise self.fail("syscalls", "must be a list")
        for i, call in enumerate(calls or ()):
            where = f"syscalls[{i}]"
            if not isinstance(call, dict):
                raise self.fail(where, "must be an object")
            names, name = call.get("names"), call.get("name")
            if name is not None:  # the older format: one name per rule
                if names:
                    raise self.fail(where, "has both name and names: use names")
                if not isinstance(name, str) or not name or "\0" in name:
                    raise self.fail(f"{where}.name", "must be a syscall name")
            elif not self.strings(names, f"{where}.names"):
                raise self.fail(f"{where}.names", "must list at least one syscall")
            self.action(call, where, "action", "errnoRet")
            self.args(call.get("args"), f"{where}.args")
            self.condition(call.get("includes"), f"{where}.includes")
            self.condition(call.get("excludes"), f"{where}.excludes")


def check(profile: Any, source: str) -> None:
    """A profile in memory (a file's, default()) checked as load() checks a file: everything resolve()
    and seccomp.compile() will read. `source` names it in the messages."""
    _Checker(source).profile(profile)


def _version(text: Any) -> tuple[int, int, int] | None:
    """ "4.8" or "5.10.2" as (major, minor, patch); None for anything else."""
    if not isinstance(text, str):
        return None
    parts = text.split(".")
    if not 2 <= len(parts) <= 3 or not all(p.isdigit() and p.isascii() for p in parts):
        return None
    major, minor, patch = (int(p) for p in (parts + ["0"])[:3])
    return major, minor, patch


def running_kernel() -> tuple[int, int, int]:
    """This kernel's version ("6.18.44-fc-v657" -> (6, 18, 44))."""
    numbers = [0, 0, 0]
    for i, part in enumerate(os.uname().release.split(".")[:3]):
        digits = len(part) - len(part.lstrip("0123456789"))
        numbers[i] = int(part[:digits] or 0)
        if digits < len(part):  # "44-fc-v657": the version ends here
            break
    return numbers[0], numbers[1], numbers[2]


# ---------------------------------------------------------------- profile -> linux.seccomp

# The names a profile's includes/excludes `arches` may use for each architecture: Go's (what Docker's
# and podman's profiles use: amd64, arm64), the kernel's (uname -m), and libseccomp's own.
ARCH_NAMES = {
    "SCMP_ARCH_X86_64": ("amd64", "x86_64"),
    "SCMP_ARCH_X86": ("386", "x86", "i386", "i686"),
    "SCMP_ARCH_X32": ("x32",),
    "SCMP_ARCH_AARCH64": ("arm64", "aarch64"),
    "SCMP_ARCH_ARM": ("arm", "armv7l", "armv6l"),
    "SCMP_ARCH_PPC64LE": ("ppc64le",),
    "SCMP_ARCH_PPC64": ("ppc64",),
    "SCMP_ARCH_PPC": ("ppc",),
    "SCMP_ARCH_S390X": ("s390x",),
    "SCMP_ARCH_S390": ("s390",),
    "SCMP_ARCH_RISCV64": ("riscv64",),
    "SCMP_ARCH_LOONGARCH64": ("loong64", "loongarch64"),
    "SCMP_ARCH_MIPS": ("mips",),
    "SCMP_ARCH_MIPSEL": ("mipsle", "mipsel"),
    "SCMP_ARCH_MIPS64": ("mips64",),
    "SCMP_ARCH_MIPSEL64": ("mips64le", "mipsel64"),
    "SCMP_ARCH_MIPS64N32": ("mips64n32",),
    "SCMP_ARCH_MIPSEL64N32": ("mips64len32", "mipsel64n32"),
}


def scmp_arch(arch: str | None = None) -> str:
    """An architecture by any of its names (None: this machine's) as libseccomp's SCMP_ARCH_ name."""
    name = (arch or os.uname().machine).lower()
    if name.upper() in ARCH_NAMES:
        return name.upper()
    for scmp, aliases in ARCH_NAMES.items():
        if name in aliases:
            return scmp
    if arch is None:
        raise UsageError(f"seccomp: this machine's architecture {name!r} is not one pycontain knows")
    raise UsageError(f"seccomp: unknown architecture {arch!r}")


def resolve(profile: dict[str, Any], caps: Iterable[str], arch: str | None = None, *,
            kernel: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """The spec's linux.seccomp for one container: `profile` (Docker format, checked: default() or
    load()) with every condition settled for the container's capabilities `caps` (names with or
    without CAP_), the architecture `arch` (default: this machine's) and the kernel version `kernel`
    (default: the running one).

    A rule is kept when all its includes hold (every capability held, the architecture named, the
    kernel at least minKernel) and no exclude does (no capability named is held, the architecture is
    not named, the kernel is older than minKernel). The architectures are the machine's entry of
    archMap (the machine and its sub-architectures) or the profile's own list. The result is plain
    data, the same for the same inputs, rules in the profile's order.
    """
    try:
        return _resolve(profile, caps, scmp_arch(arch), kernel or running_kernel())
    except (AttributeError, KeyError, TypeError, ValueError):
        check(profile, "given")  # a profile that skipped check(): say what is wrong with it
        raise


def _resolve(profile: dict[str, Any], caps: Iterable[str], native: str,
             running: tuple[int, int, int]) -> dict[str, Any]:
    names = {native.lower(), *ARCH_NAMES[native]}
    held = {c.upper().removeprefix("CAP_") for c in caps}

    def holds(cond: dict[str, Any], exclude: bool) -> bool:
        """Whether an includes (exclude False: all its tests pass) or excludes (exclude True: any of
        its tests matches) object applies."""
        tests = []
        if cond.get("caps"):
            need = [c.upper().removeprefix("CAP_") for c in cond["caps"]]
            tests.append(any(c in held for c in need) if exclude else all(c in held for c in need))
        if cond.get("arches"):
            tests.append(any(a.lower() in names for a in cond["arches"]))
        if cond.get("minKernel"):
            tests.append(running >= (_version(cond["minKernel"]) or (0, 0, 0)))
        return any(tests) if exclude else all(tests)

    out: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    if profile.get("architectures"):
        out["architectures"] = list(profile["architectures"])
    else:
        for entry in profile.get("archMap") or ():
            if entry.get("architecture") == native:
                out["architectures"] = [native, *(entry.get("subArchitectures") or ())]
                break
    if profile.get("flags"):
        out["flags"] = list(profile["flags"])
    rules = []
    for call in profile.get("syscalls") or ():
        if call.get("includes") and not holds(call["includes"], exclude=False):
            continue
        if call.get("excludes") and holds(call["excludes"], exclude=True):
            continue
        rule: dict[str, Any] = {"names": list(call["names"]) if call.get("names") else [call["name"]],
                                "action": call["action"]}
        if call.get("errnoRet") is not None:
            rule["errnoRet"] = call["errnoRet"]
        if call.get("args"):
            rule["args"] = [{k: a[k] for k in ("index", "value", "valueTwo", "op") if a.get(k) is not None}
                            for a in call["args"]]
        rules.append(rule)
    out["syscalls"] = rules
    return out
