"""The default seccomp profile (oci/profile.py) against the real kernel: what a container can and cannot
call, and that real programs still work under it.

Three layers:
  - a host process under the filter (fork, no_new_privs, install, exec): Python's threads, subprocesses,
    sockets and event loop on Debian's glibc, which needs clone3's ENOSYS;
  - `pycontain-oci` bundles whose linux.seccomp is profile.resolve(default(), caps): a probe program
    reports each call's result, the busybox and Alpine tools run;
  - `pycontain run` and `exec` with their --security-opt/--cap-add/--privileged flags.

Every refusal is shown to be the filter's: the probes run under a "marker" copy of the profile whose
default errno is ENOTRECOVERABLE (131), which no probed call returns by itself, and the same probes
run without a filter reach the kernel (`unshare -U`, keyctl and clone3 then succeed).
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import COMMAND_TIMEOUT, Pycontain, describe

pytest.register_assert_rewrite("oci_support")

from oci_support import Bundle, Oci  # noqa: E402

from pycontain import syscalls  # noqa: E402
from pycontain.oci import DEFAULT_CAPS, profile, seccomp  # noqa: E402

pytestmark = pytest.mark.integration

MARKER = errno.ENOTRECOVERABLE  # the marker profile's default errno: "refused by the filter"
# One static probe: `probe NAME...` makes each call and prints "NAME ok" or "NAME <errno>". Nothing it
# does outlives it: settimeofday(NULL, NULL) and clock_settime(.., NULL) set nothing, reboot gets bad
# magic (checked after the capability), a mount lands in the container's own mount namespace.
PROBE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

struct clone_args_v0 { uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls; };
struct open_how_v0 { uint64_t flags, mode, resolve; };

static long forked(long pid) {
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid((pid_t)pid, NULL, 0);
    return pid;
}

/* unshare(2) in a child: it would move the probe itself into the new namespace for the calls after it. */
static long unshared(int flags) {
    pid_t pid = fork();
    int status;
    if (pid == 0) _exit(unshare(flags) < 0 ? errno : 0);
    if (pid < 0 || waitpid(pid, &status, 0) < 0) return -1;
    errno = WEXITSTATUS(status);
    return errno ? -1 : 0;
}

static long call(const char *n) {
    char buf[512]; /* statx fills 256 bytes */
    if (!strcmp(n, "unshare_user")) return unshared(CLONE_NEWUSER);
    if (!strcmp(n, "unshare_mount")) return unshared(CLONE_NEWNS);
    if (!strcmp(n, "clone_plain")) return forked(syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
    if (!strcmp(n, "clone_newuser")) return forked(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
    if (!strcmp(n, "clone_newns")) return forked(syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0));
    if (!strcmp(n, "clone3")) {
        struct clone_args_v0 a = { .exit_signal = SIGCHLD };
        return forked(syscall(SYS_clone3, &a, sizeof a));
    }
    if (!strcmp(n, "keyctl")) return syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 0);
    if (!strcmp(n, "add_key")) return syscall(SYS_add_key, "user", "pycontain-probe", "x", 1, -3);
    if (!strcmp(n, "request_key")) return syscall(SYS_request_key, "user", "pycontain-none", NULL, 0);
    if (!strcmp(n, "bpf")) return syscall(SYS_bpf, 0, NULL, 0);
    if (!strcmp(n, "userfaultfd")) return syscall(SYS_userfaultfd, O_CLOEXEC);
    if (!strcmp(n, "io_uring_setup")) { char p[120] = {0}; return syscall(SYS_io_uring_setup, 1, p); }
    if (!strcmp(n, "perf_event_open")) {
        uint32_t attr[32] = {1 /* PERF_TYPE_SOFTWARE */, 128 /* size */, 0 /* CPU_CLOCK */};
        return syscall(SYS_perf_event_open, attr, 0, -1, -1, 0);
    }
    if (!strcmp(n, "open_by_handle_at")) {
        struct { unsigned int bytes; int type; unsigned char h[8]; } fh = { 8, 1, {0} };
        return syscall(SYS_open_by_handle_at, AT_FDCWD, &fh, O_RDONLY);
    }
    if (!strcmp(n, "kexec_load")) return syscall(SYS_kexec_load, 0, 0, NULL, 0);
    if (!strcmp(n, "init_module")) return syscall(SYS_init_module, NULL, 0, "");
    if (!strcmp(n, "acct")) return syscall(SYS_acct, NULL);
    if (!strcmp(n, "swapoff")) return syscall(SYS_swapoff, "/nonexistent");
    if (!strcmp(n, "syslog")) return syscall(SYS_syslog, 10 /* SIZE_BUFFER */, NULL, 0);
    if (!strcmp(n, "quotactl")) return syscall(SYS_quotactl, 0, "/nonexistent", 0, NULL);
    if (!strcmp(n, "vhangup")) return syscall(SYS_vhangup);
    if (!strcmp(n, "reboot")) return syscall(SYS_reboot, 0, 0, 0, NULL);  /* bad magic: EINVAL if allowed */
    if (!strcmp(n, "settimeofday")) return syscall(SYS_settimeofday, NULL, NULL);
    if (!strcmp(n, "clock_settime")) return syscall(SYS_clock_settime, CLOCK_REALTIME, NULL);
    if (!strcmp(n, "modify_ldt")) return syscall(SYS_modify_ldt, 0, buf, sizeof buf);
    if (!strcmp(n, "personality_linux")) return personality(0);
    if (!strcmp(n, "personality_query")) return personality(0xffffffff);
    if (!strcmp(n, "personality_norandom")) return personality(ADDR_NO_RANDOMIZE);
    if (!strcmp(n, "socket_vsock")) return syscall(SYS_socket, 40L, SOCK_STREAM, 0);
    if (!strcmp(n, "socket_vsock_high")) return syscall(SYS_socket, 0x100000028L, SOCK_STREAM, 0);
    if (!strcmp(n, "socket_alg")) return syscall(SYS_socket, 38L, SOCK_SEQPACKET, 0);
    if (!strcmp(n, "socket_inet")) return socket(AF_INET, SOCK_DGRAM, 0);
    if (!strcmp(n, "socket_unix")) return socket(AF_UNIX, SOCK_STREAM, 0);
    if (!strcmp(n, "socket_netlink")) return socket(AF_NETLINK, SOCK_RAW, 0);
    if (!strcmp(n, "socket_xdp")) return socket(44, SOCK_RAW, 0);
    if (!strcmp(n, "mount")) return mount("none", "/tmp", "tmpfs", 0, NULL);
    if (!strcmp(n, "umount2")) return umount2("/nonexistent", 0);
    if (!strcmp(n, "pivot_root")) return syscall(SYS_pivot_root, "/nonexistent", "/nonexistent");
    if (!strcmp(n, "setns")) return setns(-1, 0);
    if (!strcmp(n, "sethostname")) return sethostname("probed", 6);
    if (!strcmp(n, "fsopen")) return syscall(SYS_fsopen, "tmpfs", 0);
    if (!strcmp(n, "open_tree")) return syscall(SYS_open_tree, AT_FDCWD, "/", 0);
    if (!strcmp(n, "ptrace")) return syscall(SYS_ptrace, 3 /* PEEKUSER */, 1, 0, 0);
    if (!strcmp(n, "kcmp")) return syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, 0, 0);
    if (!strcmp(n, "process_vm_readv")) return syscall(SYS_process_vm_readv, getpid(), NULL, 0, NULL, 0, 0);
    if (!strcmp(n, "chroot")) return chroot("/");
    if (!strcmp(n, "statx")) return syscall(SYS_statx, AT_FDCWD, "/", 0, 0x7ff, buf);
    if (!strcmp(n, "faccessat2")) return syscall(SYS_faccessat2, AT_FDCWD, "/", F_OK, 0);
    if (!strcmp(n, "openat2")) {
        struct open_how_v0 how = { .flags = O_RDONLY | O_DIRECTORY };
        return syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof how);
    }
    if (!strcmp(n, "close_range")) return syscall(SYS_close_range, 1000, 1001, 0);
    if (!strcmp(n, "pidfd_open")) return syscall(SYS_pidfd_open, getpid(), 0);
    if (!strcmp(n, "epoll_pwait2")) {
        struct epoll_event ev; struct timespec zero = {0, 0};
        return syscall(SYS_epoll_pwait2, epoll_create1(0), &ev, 1, &zero, NULL, 8);
    }
    if (!strcmp(n, "memfd_create")) return syscall(SYS_memfd_create, "probe", 0);
    if (!strcmp(n, "rseq")) return syscall(SYS_rseq, NULL, 0, 0, 0);  /* EINVAL when allowed */
    if (!strcmp(n, "futex_waitv")) return syscall(SYS_futex_waitv, NULL, 0, 0, NULL, 0);
    if (!strcmp(n, "fchmodat2")) return syscall(SYS_fchmodat2, AT_FDCWD, "/nonexistent", 0644, 0);
    if (!strcmp(n, "getrandom")) return syscall(SYS_getrandom, buf, 8, 0);
    errno = 0;
    return -2;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        errno = 0;
        long rc = call(argv[i]);
        if (rc == -2 && errno == 0) { printf("%s unknown-probe\n", argv[i]); continue; }
        if (rc < 0) printf("%s %d\n", argv[i], errno);
        else printf("%s ok\n", argv[i]);
    }
    return 0;
}
"""

# What the default profile refuses a container with the default capabilities, and what it lets through
# to the kernel (whose own answer may still be an error: a refusal by the filter is MARKER).
REFUSED = ("unshare_user", "unshare_mount", "clone_newuser", "clone_newns", "keyctl", "add_key", "request_key",
           "bpf", "userfaultfd", "io_uring_setup", "perf_event_open", "open_by_handle_at", "kexec_load",
           "init_module", "acct", "swapoff", "syslog", "quotactl", "vhangup", "reboot", "settimeofday",
           "clock_settime", "modify_ldt", "personality_norandom", "socket_vsock", "socket_vsock_high",
           "socket_alg", "mount", "umount2", "pivot_root", "setns", "sethostname", "fsopen", "open_tree", "kcmp")
PASSED = ("clone_plain", "personality_linux", "personality_query", "socket_inet", "socket_unix", "socket_netlink",
          "socket_xdp", "ptrace", "process_vm_readv", "chroot", "statx", "faccessat2", "openat2", "close_range",
          "pidfd_open", "epoll_pwait2", "memfd_create", "rseq", "futex_waitv", "fchmodat2", "getrandom")
# Opened by CAP_SYS_ADMIN; the rest of REFUSED stays refused whatever the capabilities.
SYS_ADMIN_OPENS = ("unshare_user", "unshare_mount", "clone_newuser", "clone_newns", "clone3", "mount", "umount2",
                   "pivot_root", "setns", "sethostname", "fsopen", "open_tree", "perf_event_open")
NEVER = ("keyctl", "add_key", "request_key", "bpf", "userfaultfd", "io_uring_setup", "kexec_load", "init_module",
         "acct", "swapoff", "syslog", "quotactl", "vhangup", "modify_ldt", "personality_norandom", "socket_vsock",
         "socket_vsock_high", "socket_alg")


def parse(output: str) -> dict[str, str]:
    """The probe's lines as {call: "ok" or the errno as text}."""
    results = dict(line.split(" ", 1) for line in output.splitlines() if " " in line)
    assert "unknown-probe" not in results.values(), output
    return results


def linux_seccomp(caps: list[str] | tuple[str, ...], marker: bool = False) -> dict[str, Any]:
    obj = profile.resolve(profile.default(), caps)
    if marker:
        obj["defaultErrnoRet"] = MARKER
    return obj


@pytest.fixture(scope="session")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PROBE_C, built static (it runs in images without a libc of their own)."""
    out = tmp_path_factory.mktemp("seccomp-probe")
    (out / "probe.c").write_text(PROBE_C)
    res = subprocess.run(["gcc", "-static", "-O2", "-Wall", "-o", str(out / "probe"), str(out / "probe.c")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"gcc failed:\n{res.stderr}"
    return out / "probe"


# ---------------------------------------------------------------- a host process under the filter

def run_filtered(obj: dict[str, Any] | None, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """argv run on the host (no container) under the filter `obj` (None: unfiltered), installed as
    pycontain's child installs it: no_new_privs, then one seccomp(2) call, then execve."""
    bpf = seccomp.compile(obj) if obj is not None else None

    def filtered() -> None:
        if bpf is not None:
            syscalls.set_no_new_privs()
            seccomp.install(bpf)

    return subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, preexec_fn=filtered,
                          stdin=subprocess.DEVNULL)


PYTHON_WORKLOAD = r"""
import asyncio, os, socket, subprocess, sys, tempfile, threading
out = []
t = threading.Thread(target=out.append, args=("thread",)); t.start(); t.join()
out.append(subprocess.run(["/bin/echo", "child"], capture_output=True, text=True).stdout.strip())
a, b = socket.socketpair(); a.sendall(b"pair"); out.append(b.recv(4).decode())
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); s.close()
async def main():
    await asyncio.sleep(0.01)
    proc = await asyncio.create_subprocess_exec("/bin/true"); await proc.wait()
    return "loop"
out.append(asyncio.run(main()))
with tempfile.TemporaryDirectory() as d:
    os.symlink("x", d + "/l"); os.chmod(d, 0o700); os.utime(d); out.append(str(len(os.listdir(d))))
print(" ".join(out))
with open("/proc/self/status") as f:
    print([l.split()[1] for l in f if l.startswith("Seccomp:")][0])
"""


def test_python_threads_subprocesses_sockets_and_asyncio_work_under_the_filter() -> None:
    # glibc's pthread_create and posix_spawn try clone3 first: only its ENOSYS makes them fall back.
    res = run_filtered(linux_seccomp(DEFAULT_CAPS), [sys.executable, "-c", PYTHON_WORKLOAD])
    assert res.returncode == 0 and res.stdout == "thread child pair loop 1\n2\n", describe(res)
    # The same with clone3 refused with EPERM instead: glibc does not fall back (this is why the rule exists).
    obj = linux_seccomp(DEFAULT_CAPS)
    obj["syscalls"] = [r for r in obj["syscalls"] if r["names"] != ["clone3"]]
    res = run_filtered(obj, [sys.executable, "-c", PYTHON_WORKLOAD])
    assert res.returncode != 0 and "thread" not in res.stdout, describe(res)


def test_the_filter_itself_on_the_host(probe: Path) -> None:
    unfiltered = parse(run_filtered(None, [str(probe), "keyctl", "personality_norandom", "socket_vsock_high"]).stdout)
    assert unfiltered["keyctl"] != str(MARKER) and unfiltered["personality_norandom"] == "ok"
    got = parse(run_filtered(linux_seccomp(DEFAULT_CAPS, marker=True), [str(probe), *REFUSED, *PASSED]).stdout)
    # On the host these run as real root, so a call the filter passes may succeed where a container's fails.
    assert {n: got[n] for n in REFUSED} == dict.fromkeys(REFUSED, str(MARKER))
    assert [n for n in PASSED if got[n] == str(MARKER)] == []


# ---------------------------------------------------------------- pycontain-oci bundles

@pytest.fixture(scope="session")
def alpine_rootfs(alpine_tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seccomp-alpine") / "rootfs"
    root.mkdir()
    subprocess.run(["tar", "-xzf", str(alpine_tarball), "-C", str(root)], check=True, timeout=COMMAND_TIMEOUT)
    return root


def filtered_bundle(oci: Oci, args: list[str], caps: list[str] | None = None, seccomp_obj: Any = "default",
                    probe: Path | None = None, rootfs: Path | None = None) -> Bundle:
    """A bundle running `args` with capabilities `caps` (CAP_ names; default: DEFAULT_CAPS) and linux.seccomp
    `seccomp_obj` ("default": the default profile resolved for those caps; None: no filter)."""
    if rootfs is not None:
        oci._n += 1
        bundle = Bundle(oci.tmp / f"bundle{oci._n}", rootfs, args)
    else:
        bundle = oci.bundle(args)
    caps = list(caps or DEFAULT_CAPS)
    bundle.process["capabilities"] = {kind: caps for kind in ("bounding", "effective", "permitted")}
    if seccomp_obj == "default":
        seccomp_obj = linux_seccomp(caps)
    if seccomp_obj is not None:
        bundle.linux["seccomp"] = seccomp_obj
    if probe is not None:
        (bundle.rootfs / "probe").write_bytes(probe.read_bytes())
        (bundle.rootfs / "probe").chmod(0o755)
    return bundle


def run_probe(oci: Oci, probe: Path, calls: tuple[str, ...], caps: list[str] | None = None,
              seccomp_obj: Any = "default") -> dict[str, str]:
    bundle = filtered_bundle(oci, ["/probe", *calls], caps, seccomp_obj, probe)
    code, out = oci.run_bundle(bundle)
    assert code == 0, out
    return parse(out)


def test_the_default_profile_is_on_with_eperm_and_clone3_enosys(oci: Oci, probe: Path) -> None:
    bundle = filtered_bundle(oci, ["sh", "-c", "grep Seccomp: /proc/self/status; /probe keyctl clone3 clone_plain; "
                                   "unshare -U true || echo unshare refused"], probe=probe)
    code, out = oci.run_bundle(bundle)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["Seccomp:", "2"]
    assert parse("\n".join(lines[1:4])) == {"keyctl": str(errno.EPERM), "clone3": str(errno.ENOSYS),
                                            "clone_plain": "ok"}
    assert lines[-1] == "unshare refused", out


def test_unconfined_the_same_probes_reach_the_kernel(oci: Oci, probe: Path) -> None:
    """Shows the probes above can fail: without a filter, unshare -U, keyctl and clone3 succeed."""
    bundle = filtered_bundle(oci, ["sh", "-c", "grep Seccomp: /proc/self/status; /probe keyctl clone3 "
                                   "personality_norandom; unshare -U true && echo unshare worked"],
                             seccomp_obj=None, probe=probe)
    code, out = oci.run_bundle(bundle)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["Seccomp:", "0"]
    assert parse("\n".join(lines[1:4])) == {"keyctl": "ok", "clone3": "ok", "personality_norandom": "ok"}
    assert lines[-1] == "unshare worked", out


def test_default_caps_refused_and_passed_calls(oci: Oci, probe: Path) -> None:
    got = run_probe(oci, probe, (*REFUSED, *PASSED, "clone3"), seccomp_obj=linux_seccomp(DEFAULT_CAPS, marker=True))
    assert {n: got[n] for n in REFUSED} == dict.fromkeys(REFUSED, str(MARKER))
    assert [n for n in PASSED if got[n] == str(MARKER)] == [], got
    assert got["clone3"] == str(errno.ENOSYS)
    # Reached the kernel and did their work in the container.
    for name in ("clone_plain", "personality_linux", "socket_inet", "socket_unix", "statx", "openat2", "pidfd_open",
                 "memfd_create", "getrandom", "chroot", "close_range", "faccessat2", "epoll_pwait2"):
        assert got[name] == "ok", (name, got[name])


def test_sys_admin_opens_its_calls_and_nothing_else(oci: Oci, probe: Path) -> None:
    caps = [*DEFAULT_CAPS, "CAP_SYS_ADMIN"]
    got = run_probe(oci, probe, (*REFUSED, "clone3"), caps, linux_seccomp(caps, marker=True))
    assert [n for n in SYS_ADMIN_OPENS if got[n] == str(MARKER)] == [], got
    assert {n: got[n] for n in NEVER} == dict.fromkeys(NEVER, str(MARKER))
    for name in ("unshare_mount", "clone_newns", "clone3", "mount", "sethostname", "fsopen", "open_tree"):
        assert got[name] == "ok", (name, got[name])


def test_single_capabilities_open_their_calls(oci: Oci, probe: Path) -> None:
    caps = [*DEFAULT_CAPS, "CAP_PERFMON", "CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE", "CAP_SYS_TIME", "CAP_SYS_BOOT"]
    opened = ("perf_event_open", "open_by_handle_at", "kcmp", "settimeofday", "clock_settime", "reboot")
    got = run_probe(oci, probe, (*opened, "mount", "keyctl"), caps, linux_seccomp(caps, marker=True))
    assert [n for n in opened if got[n] == str(MARKER)] == [], got
    assert (got["settimeofday"], got["clock_settime"], got["reboot"]) == ("ok", str(errno.EFAULT), str(errno.EINVAL))
    assert got["mount"] == got["keyctl"] == str(MARKER)


def test_busybox_tools_work_under_the_filter(oci: Oci) -> None:
    script = ("set -e; ls / >/dev/null; wget --help 2>&1 | head -1 >/dev/null; mkdir -p /tmp/d; cd /tmp/d; "
              "echo hi > f; ln -s f l; chmod 600 f; chown 1000:1000 f; mv f g; cat l 2>/dev/null || cat g; "
              "ps >/dev/null; (sleep 0.1 &) ; wait; date >/dev/null; id -u; uname -s; nslookup 2>/dev/null || true; "
              "tar -cf /tmp/t.tar -C /tmp d; gzip /tmp/t.tar; ls /tmp")
    code, out = oci.run_bundle(filtered_bundle(oci, ["sh", "-c", script]))
    assert (code, out) == (0, "hi\n0\nLinux\nd\nt.tar.gz\n"), out


def test_the_filter_goes_on_before_capabilities_are_dropped_without_no_new_privs(oci: Oci) -> None:
    # Without noNewPrivileges the filter is installed while the child still has CAP_SYS_ADMIN, before
    # capset, setgroups, setresuid and close_range: the profile must allow what pycontain's child does next.
    bundle = filtered_bundle(oci, ["sh", "-c", "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; id -u"])
    bundle.process["noNewPrivileges"] = False
    bundle.process["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [50]}
    code, out = oci.run_bundle(bundle)
    assert (code, out.split()) == (0, ["NoNewPrivs:", "0", "Seccomp:", "2", "1000"]), out


def test_alpine_apk_and_tools_work_under_the_filter(oci: Oci, alpine_rootfs: Path) -> None:
    script = ("set -e; apk --version | cut -d, -f1; apk info -e busybox musl; wget --help 2>&1 | head -1 >/dev/null; "
              "ls /etc/apk >/dev/null; sh -c 'echo sub'; grep Seccomp: /proc/self/status")
    bundle = filtered_bundle(oci, ["/bin/sh", "-c", script], rootfs=alpine_rootfs)
    code, out = oci.run_bundle(bundle)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("apk-tools "), out
    assert lines[1:] == ["busybox", "musl", "sub", "Seccomp:\t2"], out


def test_exec_gets_the_containers_filter(oci: Oci, probe: Path) -> None:
    c = oci.create(filtered_bundle(oci, ["sleep", "1000"], probe=probe))
    c.start()
    res = oci("exec", c.id, "sh", "-c", "grep Seccomp: /proc/self/status; /probe keyctl unshare_user socket_inet")
    assert res.returncode == 0, describe(res)
    lines = res.stdout.splitlines()
    assert lines[0] == "Seccomp:\t2"
    assert parse("\n".join(lines[1:])) == {"keyctl": "1", "unshare_user": "1", "socket_inet": "ok"}
    c.delete("--force")
    c.wait()


# ---------------------------------------------------------------- pycontain run (the lead's flags)

def mounted_probe(probe: Path, tmp_path: Path) -> str:
    d = tmp_path / "probe-dir"
    d.mkdir()
    (d / "probe").write_bytes(probe.read_bytes())
    (d / "probe").chmod(0o755)
    return f"{d}:/probe-dir:ro"


@pytest.mark.usefixtures("no_leaks")
def test_run_rejects_a_malformed_profile_with_one_line(pc: Pycontain, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": "read"}]}))
    res = pc("run", "--rm", "--security-opt", f"seccomp={bad}", "busybox", "true")
    assert res.returncode == 125 and "Traceback" not in res.stderr, describe(res)
    assert res.stderr.strip().endswith(f"seccomp profile {bad}: syscalls[0].names: must be a list of strings"), \
        describe(res)
    assert res.stderr.count("\n") == 1, describe(res)


@pytest.mark.usefixtures("no_leaks")
def test_run_default_filter_and_unconfined(pc: Pycontain) -> None:
    res = pc("run", "--rm", "busybox", "sh", "-c", "grep Seccomp: /proc/self/status; unshare -U true || echo refused")
    assert (res.returncode, res.stdout) == (0, "Seccomp:\t2\nrefused\n"), describe(res)
    res = pc("run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "sh", "-c",
             "grep Seccomp: /proc/self/status; unshare -U true && echo worked")
    assert (res.returncode, res.stdout) == (0, "Seccomp:\t0\nworked\n"), describe(res)


@pytest.mark.usefixtures("no_leaks")
def test_run_cap_add_sys_admin_and_privileged(pc: Pycontain, probe: Path, tmp_path: Path) -> None:
    vol = mounted_probe(probe, tmp_path)
    res = pc("run", "--rm", "--cap-add", "SYS_ADMIN", "-v", vol, "busybox", "sh", "-c",
             "grep Seccomp: /proc/self/status; /probe-dir/probe unshare_mount keyctl clone3")
    assert (res.returncode, res.stdout) == (0, "Seccomp:\t2\nunshare_mount ok\nkeyctl 1\nclone3 ok\n"), describe(res)
    res = pc("run", "--rm", "--privileged", "-v", vol, "busybox", "sh", "-c",
             "grep Seccomp: /proc/self/status; /probe-dir/probe keyctl")
    assert (res.returncode, res.stdout) == (0, "Seccomp:\t0\nkeyctl ok\n"), describe(res)


@pytest.mark.usefixtures("no_leaks")
def test_run_with_a_profile_file(pc: Pycontain, tmp_path: Path) -> None:
    mine = profile.default()
    mine["syscalls"].insert(0, {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": MARKER})
    mine["syscalls"][1]["names"] = [n for n in mine["syscalls"][1]["names"] if n not in ("mkdir", "mkdirat")]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(mine))
    res = pc("run", "--rm", "--security-opt", f"seccomp={path}", "busybox", "sh", "-c", "mkdir /tmp/x; echo $?")
    assert res.returncode == 0 and res.stdout == "1\n" and "recoverable" in res.stderr.lower(), describe(res)


@pytest.mark.usefixtures("no_leaks")
def test_run_exec_gets_the_filter(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "sc", "busybox", "sleep", "1000")
    try:
        res = pc("exec", "sc", "sh", "-c", "grep Seccomp: /proc/self/status; unshare -U true || echo refused")
        assert (res.returncode, res.stdout) == (0, "Seccomp:\t2\nrefused\n"), describe(res)
    finally:
        pc.ok("rm", "-f", "sc")
