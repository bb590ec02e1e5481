"""oci/seccomp.py against the real kernel: a compiled filter, installed in a forked child, is enforced.

Each test forks; the child sets no_new_privs (what lets an unprivileged process install a filter, and
what pycontain's child does first), installs the filter, probes, and reports through its exit status:
0 when every probe behaved, otherwise the number of the first probe that did not. A child whose
install() did nothing fails at its first denied call.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pycontain import syscalls
from pycontain.oci import seccomp

ERRNO_CALLS = 38  # ENOSYS, podman's defaultErrnoRet


def in_filtered_child(profile: dict[str, Any], probes: Callable[[], int], flags: list[str] | None = None) -> int:
    """Fork, install `profile` in the child, run `probes` there; the child's exit status."""
    bpf = seccomp.compile(profile)  # in the parent, as the runtime does
    pid = os.fork()
    if pid == 0:
        code = 100
        try:
            syscalls.set_no_new_privs()
            seccomp.install(bpf, flags)
            code = probes()
        except BaseException:  # noqa: BLE001 - a child of pytest must never return into pytest
            code = 101
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), f"the child died of signal {os.WTERMSIG(status)}"
    return os.WEXITSTATUS(status)


def raises(call: Callable[[], object], err: int) -> bool:
    try:
        call()
    except OSError as e:
        return e.errno == err
    return False


def filter_mode() -> str:
    status = Path("/proc/self/status").read_text()
    return next(line.split()[1] for line in status.splitlines() if line.startswith("Seccomp:"))


def test_denied_calls_fail_with_their_errno_and_the_rest_work(tmp_path: Path) -> None:
    keep = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    other = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    o_creat, o_excl = os.O_CREAT, os.O_EXCL
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": ERRNO_CALLS},
            # Arguments: fchdir of one descriptor only; O_CREAT without O_EXCL (value is the mask,
            # valueTwo what the masked flags must equal).
            {"names": ["fchdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES,
             "args": [{"index": 0, "value": other, "op": "SCMP_CMP_EQ"}]},
            {"names": ["openat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS,
             "args": [{"index": 2, "value": o_creat | o_excl, "valueTwo": o_creat, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["open"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS,
             "args": [{"index": 1, "value": o_creat | o_excl, "valueTwo": o_creat, "op": "SCMP_CMP_MASKED_EQ"}]},
        ],
    }

    def probes() -> int:
        checks = [
            lambda: filter_mode() == "2",  # SECCOMP_MODE_FILTER
            lambda: raises(lambda: os.mkdir(tmp_path / "denied"), errno.EPERM),
            lambda: not (tmp_path / "denied").exists(),
            lambda: os.getpid() == -ERRNO_CALLS,  # getpid cannot fail, so libc hands back the raw -errno
            lambda: os.getppid() > 0,
            lambda: raises(lambda: os.fchdir(other), errno.EACCES),
            lambda: os.fchdir(keep) is None and os.getcwd() == str(tmp_path),
            lambda: raises(lambda: os.open(tmp_path / "plain", os.O_CREAT | os.O_WRONLY), errno.EROFS),
            lambda: os.close(os.open(tmp_path / "excl", os.O_CREAT | os.O_EXCL | os.O_WRONLY)) is None,
            lambda: os.listdir(tmp_path) == ["excl"],
        ]
        return next((n for n, check in enumerate(checks, 1) if not check()), 0)

    try:
        assert in_filtered_child(profile, probes) == 0
    finally:
        os.close(keep)
        os.close(other)
    assert filter_mode() == "0"  # the test process itself stays unfiltered


def test_a_default_errno_profile_allows_only_its_list(tmp_path: Path) -> None:
    # Enough for Python to keep running and exit; everything else (mkdir, getppid, uname) gets EACCES.
    allowed = ["read", "write", "close", "openat", "newfstatat", "fstat", "lseek", "ioctl", "mmap", "munmap",
               "mremap", "brk", "mprotect", "madvise", "rt_sigaction", "rt_sigprocmask", "getpid", "gettid",
               "futex", "getrandom", "exit", "exit_group"]
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EACCES,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}],
    }
    pid_before = os.getpid()

    def probes() -> int:
        checks = [
            lambda: raises(lambda: os.mkdir(tmp_path / "denied"), errno.EACCES),
            lambda: raises(os.uname, errno.EACCES),
            lambda: os.getpid() != pid_before and os.getpid() > 0,  # allowed: the child's own pid
            lambda: filter_mode() == "2",  # openat, read, close: allowed
        ]
        return next((n for n, check in enumerate(checks, 1) if not check()), 0)

    assert in_filtered_child(profile, probes, ["SECCOMP_FILTER_FLAG_TSYNC"]) == 0
    assert not (tmp_path / "denied").exists()


def test_the_filter_outlives_execve(tmp_path: Path) -> None:
    # What the runtime relies on: installed before execve, it binds the container's program.
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}

    def probes() -> int:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)  # mkdir's complaint is expected; keep it out of the test's output
        os.execv("/bin/mkdir", ["mkdir", str(tmp_path / "denied")])

    assert in_filtered_child(profile, probes) == 1  # mkdir(1): "Operation not permitted"
    assert not (tmp_path / "denied").exists()
