"""`pycontain verify [IMAGE]`: prove each isolation claim of the README, from inside and from outside.

The README promises what a container cannot see or do. This command starts real containers with the
default flags (plus `--memory`/`--pids-limit` where a claim is about them) and checks each promise twice:
a shell script inside prints what the container sees (/proc, /dev, mountinfo, its capabilities...),
and this process looks at the same container from the host (/proc/PID/ns/*, /proc/PID/status, its
cgroup's files, `inspect`'s state). Each claim also has a control where one makes sense: the host
mount and the SysV segment it must not see are first seen on the host, so "invisible" is not "never
made".

Three containers, started one after another and then run at the same time (0.1 s here; 2.3 s in
scripts/vm-test's emulated guest):

    ns       namespaces, capabilities, no_new_privs, seccomp, masked and read-only paths, /dev
    limits   --memory and --pids-limit: a fork loop that must stop at the limit, then a memory hog
             that must be OOM-killed
    userns   --userns=auto: its uid_map (skipped with the reason when /etc/subuid has no range)

Each script prints its first observations, then `@@ready`, and waits for a line on its stdin. This
process then makes the host objects (the mount, the segment), looks at the container from outside and
answers; the script prints the rest and exits. Everything goes through the attach protocol of the
container's monitor (attach.py), in this one process: no `pycontain` subprocess, no sleeps.

What is expected comes from pycontain's own tables (config.Security, oci.MASKED_PATHS/READONLY_PATHS,
mounts.DEVICES/DEV_LINKS), never a second copy. The decisions (check_* below) are pure functions of an
Observed record, so tests can feed them failing observations; the command has no switch to fake one.

Cleanup runs on every path (a failed start, Ctrl-C, SIGTERM, SIGHUP): containers are removed by name
(so even one whose create was interrupted half-way is found), the host mount is unmounted and its
directory removed, the segment is deleted.
"""

from __future__ import annotations

import os
import select
import signal
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pycontain.errors import ImageNotFound, PycontainError, UsageError

COMMANDS: dict[str, tuple[list[Any], str, str]] = {
    "verify": ([], "[IMAGE]", "start containers and prove each isolation claim from inside and outside "
                              "(default image: the built-in busybox)"),
}

DEFAULT_IMAGE = "busybox"
TIMEOUT = 30.0  # seconds for all containers to answer: a hang guard (a whole run takes 0.1-2.5 s)
MEMORY_LIMIT = 16 << 20  # --memory for the OOM check; the hog allocates 4 times as much
HOG_BYTES = 64 << 20
PIDS_LIMIT = 16  # --pids-limit for the fork check; the loop tries 4 times as many processes
FORK_TRIES = 4 * PIDS_LIMIT
NAMESPACES = ("pid", "mnt", "uts", "ipc", "net", "cgroup")
# Interfaces the kernel puts in every new network namespace once their tunnel module is loaded (ipip,
# sit, gre, ...): their fallback devices, never one of the host's.
FALLBACK_DEVICES = frozenset(("tunl0", "sit0", "ip6tnl0", "gre0", "gretap0", "erspan0", "ip_vti0", "ip6_vti0",
                              "ip6gre0"))
MARK = "@@"  # a script's output is sections: a line "@@name", then what it printed for that name

CLAIMS = ("PID namespace", "mount namespace", "UTS namespace", "IPC namespace", "network namespace",
          "cgroup namespace", "memory limit", "pids limit", "capabilities", "no_new_privs", "seccomp",
          "masked paths", "read-only paths", "/dev", "user namespace")


# ---------------------------------------------------------------- the scripts (busybox sh)

def ns_script(masked: tuple[str, ...]) -> str:
    """The namespace container's script. Its PID 1 is this shell; everything it runs is a busybox
    applet. After `read go`: what must not see the host objects made meanwhile, and (only when this
    process has seen from outside that the UTS namespace is the container's own: the word `write`)
    the attempts to change the hostname, which must fail."""
    return "\n".join((
        f"echo {MARK}pid1; cat /proc/1/cmdline; echo",
        f"echo {MARK}procs; cat /proc/[0-9]*/stat",
        f"echo {MARK}status; cat /proc/1/status",
        f"echo {MARK}hostname; cat /proc/sys/kernel/hostname",
        f"echo {MARK}net; ls -A /sys/class/net",
        f"echo {MARK}cgroup; cat /proc/1/cgroup",
        f"echo {MARK}devnames; ls -A /dev",
        f"echo {MARK}devstat; stat -c '%n|%F|%t:%T' /dev/*",
        f"echo {MARK}masked; stat -c '%n|%F|%t:%T' {' '.join(masked)} 2>&1",
        f"echo {MARK}seccomp; unshare -U true 2>&1; echo \"exit=$?\"",
        f"echo {MARK}ready",
        "read go",
        f"echo {MARK}mounts; cat /proc/self/mountinfo",
        f"echo {MARK}shm; cat /proc/sysvipc/shm",
        "if [ \"$go\" = write ]; then",
        f"  echo {MARK}write; (echo verify > /proc/sys/kernel/hostname) 2>&1; echo \"exit=$?\"",
        "  hostname verify 2>&1; echo \"exit=$?\"",
        "fi",
        f"echo {MARK}end",
    )) + "\n"


def limits_script() -> str:
    """The limits container's script: a loop that forks until the pids limit stops it (only shell
    builtins run once the limit is reached: `echo`, `read`, `[`), its cgroup's own files, then, after
    `read go`, a memory hog as PID 1 (`exec dd`: its buffer is allocated and filled by read(2))."""
    files = {"events": ("pids.events", "pids/pids.events"), "max": ("pids.max", "pids/pids.max"),
             "memory": ("memory.max", "memory/memory.limit_in_bytes")}
    lines = [
        f"echo {MARK}forks",
        f"( i=0; while [ $i -lt {FORK_TRIES} ]; do sleep 600 & i=$((i+1)); echo $i > /tmp/.verify-forks; done )"
        " 2>/tmp/.verify-forkerr",
        "echo \"status=$?\"",
        "[ -r /tmp/.verify-forks ] && read n < /tmp/.verify-forks && echo \"forks=$n\"",
        "[ -r /tmp/.verify-forkerr ] && read e < /tmp/.verify-forkerr && echo \"error=$e\"",
    ]
    for key, names in files.items():
        paths = " ".join(f"/sys/fs/cgroup/{n}" for n in names)
        lines.append(f"for f in {paths}; do [ -r $f ] && read v < $f && echo \"{key}=$v\"; done")
    lines += [f"echo {MARK}ready", "read go",
              f"exec dd if=/dev/zero of=/dev/null bs={HOG_BYTES >> 20}M count=1"]
    return "\n".join(lines) + "\n"


def userns_script() -> str:
    return "\n".join((
        f"echo {MARK}uidmap; cat /proc/self/uid_map",
        f"echo {MARK}gidmap; cat /proc/self/gid_map",
        f"echo {MARK}ready",
        "read go",
        f"echo {MARK}end",
    )) + "\n"


# ---------------------------------------------------------------- observations

@dataclass
class Observed:
    """Everything the checks decide on: what the containers printed (sections by name) and what this
    process saw from outside. Empty means "not observed"; the *_error fields say why."""

    argv: list[str] = field(default_factory=list)  # the namespace container's command (its PID 1)
    cid: str = ""  # its id: its cgroup is named after it
    ns: dict[str, str] = field(default_factory=dict)  # its sections
    ns_error: str = ""
    host_ns: dict[str, str] = field(default_factory=dict)  # kind -> "pid:[4026531836]", this process's
    ctr_ns: dict[str, str] = field(default_factory=dict)  # the same, of the container's PID 1
    ctr_status: str = ""  # /proc/PID/status of the container's PID 1, read from the host
    ctr_cgroup: str = ""  # /proc/PID/cgroup, read from the host
    hostname: str = ""  # the hostname pycontain gave the container
    host_hostname: tuple[str, str] = ("", "")  # the host's, before the containers started and at the end
    mount_token: str = ""  # the source name of the host tmpfs made while the container ran
    mount_on_host: bool = False  # the control: the host's own mountinfo showed it
    mount_error: str = ""
    shm_key: int = 0  # the key of the host SysV shm segment made while the container ran
    shm_on_host: bool = False  # the control: the host's /proc/sysvipc/shm showed it
    shm_error: str = ""
    host_paths: dict[str, str] = field(default_factory=dict)  # masked/read-only path -> "dir", "file" or ""
    caps: tuple[str, ...] = ()  # the documented default capability set (CAP_ names)
    no_new_privs: bool = True  # whether the default sets it
    seccomp: bool = True  # whether the default has a filter
    limits: dict[str, str] = field(default_factory=dict)  # the limits container's sections
    limits_error: str = ""
    limits_exit: int | None = None
    limits_oom: bool | None = None  # inspect's OOMKilled
    limits_host: dict[str, str] = field(default_factory=dict)  # its cgroup's files read from the host
    userns: dict[str, str] = field(default_factory=dict)
    userns_error: str = ""
    userns_skip: str = ""  # why the user namespace claim was not checked
    userns_status: str = ""  # /proc/PID/status of its PID 1, from the host


class Row(NamedTuple):
    claim: str
    how: str
    result: str  # "ok", "FAILED: what was seen", or "skipped: why"


class Missing(Exception):
    """An observation a check needs is not there (the container did not print it)."""


def sections(text: str) -> dict[str, str]:
    """A script's output by section: the text after a line `@@name` up to the next such line."""
    out: dict[str, str] = {}
    name = None
    lines: list[str] = []
    for line in text.split("\n"):
        if line.startswith(MARK) and line[len(MARK):].isidentifier():
            if name is not None:
                out[name] = "\n".join(lines)
            name, lines = line[len(MARK):], []
        elif name is not None:
            lines.append(line)
    if name is not None:
        out[name] = "\n".join(lines).rstrip("\n")
    return out


def _section(found: dict[str, str], name: str, error: str) -> str:
    if name not in found:
        raise Missing(f"not observed: {error}" if error else f"the container printed no {name!r} section")
    return found[name]


def status_fields(text: str) -> dict[str, str]:
    """/proc/PID/status as {key: value}."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def cap_names(mask: int) -> list[str]:
    from pycontain.config import CAPABILITIES

    return [name for name, bit in sorted(CAPABILITIES.items(), key=lambda kv: kv[1]) if mask >> bit & 1] + \
        [f"bit{bit}" for bit in range(64) if mask >> bit & 1 and bit not in CAPABILITIES.values()]


def cap_mask(caps: tuple[str, ...]) -> int:
    from pycontain.config import capability_mask

    return capability_mask(tuple(c.removeprefix("CAP_") for c in caps))


def mountinfo(text: str) -> dict[str, tuple[str, str, str]]:
    """/proc/PID/mountinfo: mount point -> (per-mount options, fs type, source); the top mount wins."""
    out = {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if sep and len(fields) >= 6 and len(rest) >= 2:
            out[fields[4]] = (fields[5], rest[0], rest[1])
    return out


def _ns_differs(o: Observed, kind: str) -> str:
    """"" when the container's namespace of this kind is not this process's, else the problem."""
    mine, theirs = o.host_ns.get(kind), o.ctr_ns.get(kind)
    if not mine or not theirs:
        raise Missing(f"could not read /proc/PID/ns/{kind} from the host" + (f" ({o.ns_error})" if o.ns_error else ""))
    return "" if mine != theirs else f"the container's {kind} namespace is the host's ({theirs})"


def _ns_text(o: Observed, kind: str) -> str:
    return f"{o.ctr_ns.get(kind, '?')} vs host {o.host_ns.get(kind, '?').partition(':')[2]}"


def attempts(text: str) -> list[tuple[str, int | None]]:
    """Commands the script ran as `CMD 2>&1; echo "exit=$?"`: (their output, exit code) in order."""
    out: list[tuple[str, int | None]] = []
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("exit="):
            code = line[5:]
            out.append(("\n".join(lines).strip(), int(code) if code.isdigit() else None))
            lines = []
        else:
            lines.append(line)
    return out


def _row(claim: str, how: str, problems: list[str]) -> Row:
    return Row(claim, how, "FAILED: " + "; ".join(problems) if problems else "ok")


# ---------------------------------------------------------------- the checks (pure decisions)

def check_pid(o: Observed) -> Row:
    procs = []
    for line in _section(o.ns, "procs", o.ns_error).splitlines():
        head, _, tail = line.rpartition(")")
        pid, _, comm = head.partition(" (")
        if pid.strip().isdigit() and len(tail.split()) >= 2:
            procs.append((int(pid), comm, int(tail.split()[1])))
    cmdline = _section(o.ns, "pid1", o.ns_error).removesuffix("\n").removesuffix("\0").split("\0")
    nspid = status_fields(o.ctr_status).get("NSpid", "").split()
    pids = {p for p, _, _ in procs}
    problems = []
    if not procs:
        problems.append("no process listed in the container's /proc")
    tops = [p for p, _, ppid in procs if ppid == 0]
    if tops != [1]:
        problems.append(f"processes with no parent in the container: {tops} (only PID 1 may have none)")
    strays = [f"{p} ({c})" for p, c, ppid in procs if ppid and ppid not in pids]
    if strays:
        problems.append("processes not descended from its PID 1: " + ", ".join(strays[:5]))
    if cmdline != o.argv:
        problems.append(f"PID 1 runs {' '.join(cmdline)[:60]!r}, not the command")
    if len(nspid) < 2 or nspid[-1] != "1":
        problems.append(f"from the host, its PID 1's NSpid is {' '.join(nspid) or 'missing'}")
    problems += [p for p in [_ns_differs(o, "pid")] if p]
    comms = ", ".join(sorted({c for _, c, _ in procs}))
    how = (f"in: /proc lists {len(procs)} process{'es' if len(procs) != 1 else ''} ({comms}), all under PID 1, "
           "which runs the command; "
           f"out: NSpid {' '.join(nspid)}, pid ns {_ns_text(o, 'pid')}")
    return _row("PID namespace", how, problems)


def check_mount(o: Observed) -> Row:
    inside = _section(o.ns, "mounts", o.ns_error)
    problems = []
    if o.mount_error or not o.mount_on_host:
        problems.append(f"the host tmpfs could not be made or seen on the host: {o.mount_error or 'not in mountinfo'}")
    elif o.mount_token in inside:
        problems.append(f"the host tmpfs {o.mount_token} is in the container's mountinfo")
    if not inside.strip():
        problems.append("the container's mountinfo is empty")
    problems += [p for p in [_ns_differs(o, "mnt")] if p]
    how = (f"out: tmpfs {o.mount_token or '?'} mounted on the host while it ran (seen in the host's mountinfo); "
           f"in: not in /proc/self/mountinfo ({len(mountinfo(inside))} mounts); mnt ns {_ns_text(o, 'mnt')}")
    return _row("mount namespace", how, problems)


def check_uts(o: Observed) -> Row:
    inside = _section(o.ns, "hostname", o.ns_error).strip()
    before, after = o.host_hostname
    problems = []
    if inside != o.hostname:
        problems.append(f"its hostname is {inside!r}, not the one pycontain set ({o.hostname!r})")
    if before != after:
        problems.append(f"the host's hostname changed from {before!r} to {after!r}")
    if inside == after:
        problems.append(f"the container and the host share the hostname {inside!r}")
    problems += [p for p in [_ns_differs(o, "uts")] if p]
    tries = attempts(o.ns["write"]) if "write" in o.ns else []
    if len(tries) < 2:
        problems.append("`hostname` inside was not tried (the UTS namespace is the host's)")
    elif tries[1][1] == 0:
        problems.append(f"`hostname verify` inside succeeded ({tries[1][0][:60]!r})")
    how = (f"in: hostname {inside!r} (set by pycontain in the container's namespace), `hostname verify` "
           f"refused ({tries[1][0].rpartition(': ')[2] if len(tries) > 1 else '?'}); out: the host's stays "
           f"{after!r}; uts ns {_ns_text(o, 'uts')}")
    return _row("UTS namespace", how, problems)


def check_ipc(o: Observed) -> Row:
    inside = _section(o.ns, "shm", o.ns_error)
    keys = {line.split()[0] for line in inside.splitlines()[1:] if line.split()}
    problems = []
    if o.shm_error or not o.shm_on_host:
        problems.append(f"the host segment could not be made or seen on the host: {o.shm_error or 'not listed'}")
    elif str(o.shm_key) in keys:
        problems.append(f"the host's segment (key {o.shm_key}) is in the container's /proc/sysvipc/shm")
    if "key" not in inside.split("\n", 1)[0]:
        problems.append(f"the container's /proc/sysvipc/shm is not readable: {inside[:80]!r}")
    problems += [p for p in [_ns_differs(o, "ipc")] if p]
    how = (f"out: SysV shm segment key {o.shm_key} made on the host while it ran (listed there); in: "
           f"/proc/sysvipc/shm lists {len(keys)} segment(s), not it; ipc ns {_ns_text(o, 'ipc')}")
    return _row("IPC namespace", how, problems)


def check_net(o: Observed) -> Row:
    names = _section(o.ns, "net", o.ns_error).split()
    problems = []
    if "lo" not in names:
        problems.append("no lo in the container")
    extra = [n for n in names if n != "lo" and n not in FALLBACK_DEVICES]
    if extra:
        problems.append("interfaces other than its own lo: " + ", ".join(extra))
    problems += [p for p in [_ns_differs(o, "net")] if p]
    how = (f"--network none; in: /sys/class/net lists {' '.join(names) or 'nothing'}; "
           f"out: net ns {_ns_text(o, 'net')}")
    return _row("network namespace", how, problems)


def _cgroup_lines(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out.append((parts[1], parts[2]))
    return out


def check_cgroup(o: Observed) -> Row:
    inside = _cgroup_lines(_section(o.ns, "cgroup", o.ns_error))
    outside = _cgroup_lines(o.ctr_cgroup)
    # The hierarchies pycontain puts a container in: v1's controllers it limits, else the v2 line.
    used = [(c, p) for c, p in outside if {"memory", "pids"} & set(c.split(","))] or \
        [(c, p) for c, p in outside if c == ""]
    problems = []
    if not inside:
        problems.append("the container's /proc/self/cgroup is empty")
    not_root = [f"{c or '0:'}:{p}" for c, p in inside if p != "/"]
    if not_root:
        problems.append("inside, not the root of its hierarchy: " + ", ".join(not_root[:3]))
    if not used:
        problems.append("the host's /proc/PID/cgroup of the container was not read")
    foreign = [f"{c or '0:'}:{p}" for c, p in used if o.cid not in p]
    if foreign:
        problems.append("from the host, not its own cgroup: " + ", ".join(foreign[:3]))
    problems += [p for p in [_ns_differs(o, "cgroup")] if p]
    where = sorted({p for _, p in used})
    hierarchies = "its one hierarchy" if len(inside) == 1 else f"all {len(inside)} hierarchies"
    how = (f"in: /proc/self/cgroup says / in {hierarchies}; out: "
           f"{' '.join(w[:24] + '...' if len(w) > 24 else w for w in where) or '?'} "
           f"({', '.join(c or 'v2' for c, _ in used)}); cgroup ns {_ns_text(o, 'cgroup')}")
    return _row("cgroup namespace", how, problems)


def check_memory(o: Observed) -> Row:
    values = dict(line.partition("=")[::2] for line in _section(o.limits, "forks", o.limits_error).splitlines())
    inside, outside = values.get("memory", ""), o.limits_host.get("memory", "")
    problems = []
    for where, value in (("inside", inside), ("on the host", outside)):
        if value != str(MEMORY_LIMIT):
            problems.append(f"the cgroup's memory limit {where} is {value or 'unreadable'}, not {MEMORY_LIMIT}")
    if o.limits_exit != 137:
        problems.append(f"the hog exited {o.limits_exit if o.limits_exit is not None else o.limits_error or '?'}, "
                        "not 137 (SIGKILL)")
    if o.limits_oom is not True:
        problems.append(f"inspect says OOMKilled {str(o.limits_oom).lower() if o.limits_oom is not None else '?'}")
    how = (f"--memory {MEMORY_LIMIT >> 20}m: the cgroup's limit is {inside or '?'} in and out; `dd bs="
           f"{HOG_BYTES >> 20}M` as PID 1 exited {o.limits_exit}, inspect OOMKilled {str(o.limits_oom).lower()}")
    return _row("memory limit", how, problems)


def check_pids(o: Observed) -> Row:
    values = dict(line.partition("=")[::2] for line in _section(o.limits, "forks", o.limits_error).splitlines())
    forks = int(values["forks"]) if values.get("forks", "").isdigit() else 0
    events = values.get("events", "").split()
    hits = int(events[1]) if len(events) == 2 and events[0] == "max" and events[1].isdigit() else 0
    problems = []
    if forks >= FORK_TRIES:
        problems.append(f"all {FORK_TRIES} forks succeeded")
    elif forks > PIDS_LIMIT:
        problems.append(f"{forks} processes started under --pids-limit {PIDS_LIMIT}")
    if "fork" not in values.get("error", ""):
        problems.append(f"no fork failure reported (stderr: {values.get('error', '')!r})")
    if not hits:
        problems.append(f"pids.events does not count a refused fork ({values.get('events', 'unreadable')!r})")
    for where, value in (("inside", values.get("max", "")), ("on the host", o.limits_host.get("pids", ""))):
        if value != str(PIDS_LIMIT):
            problems.append(f"pids.max {where} is {value or 'unreadable'}, not {PIDS_LIMIT}")
    how = (f"--pids-limit {PIDS_LIMIT}: a fork loop started {forks} of {FORK_TRIES} processes, then "
           f"{values.get('error', '').removeprefix('sh: ') or 'no error'}; pids.events {' '.join(events)}; "
           f"pids.max {values.get('max', '?')} in, {o.limits_host.get('pids', '?')} out")
    return _row("pids limit", how, problems)


def check_caps(o: Observed) -> Row:
    want = cap_mask(o.caps)
    problems = []
    seen = ""
    for where, text in (("inside", _section(o.ns, "status", o.ns_error)), ("from the host", o.ctr_status)):
        st = status_fields(text)
        for key, expected in (("CapEff", want), ("CapPrm", want), ("CapBnd", want), ("CapInh", 0), ("CapAmb", 0)):
            try:
                value = int(st[key], 16)
            except (KeyError, ValueError):
                problems.append(f"{key} {where}: unreadable")
                continue
            if key == "CapEff":
                seen = st[key]
            if value != expected:
                extra, lacking = cap_names(value & ~expected), cap_names(expected & ~value)
                problems.append(f"{key} {where} {st[key]}" + (f", extra {' '.join(extra)}" if extra else "")
                                + (f", lacking {' '.join(lacking)}" if lacking else ""))
    how = (f"CapEff/Prm/Bnd of PID 1 = {seen or '?'} in and out, the default set ({len(o.caps)}: "
           f"{' '.join(c.removeprefix('CAP_') for c in o.caps)}); CapInh, CapAmb 0")
    return _row("capabilities", how, problems)


def check_nnp(o: Observed) -> Row:
    want = "1" if o.no_new_privs else "0"
    problems = []
    for where, text in (("inside", _section(o.ns, "status", o.ns_error)), ("from the host", o.ctr_status)):
        value = status_fields(text).get("NoNewPrivs", "unreadable")
        if value != want:
            problems.append(f"NoNewPrivs {where} is {value}")
    how = f"NoNewPrivs of PID 1 = {want} in and out (the default{'' if o.no_new_privs else ' does not set it'})"
    return _row("no_new_privs", how, problems)


def check_seccomp(o: Observed) -> Row:
    want = "2" if o.seccomp else "0"
    problems = []
    for where, text in (("inside", _section(o.ns, "status", o.ns_error)), ("from the host", o.ctr_status)):
        value = status_fields(text).get("Seccomp", "unreadable")
        if value != want:
            problems.append(f"Seccomp {where} is {value}")
    tries = attempts(_section(o.ns, "seccomp", o.ns_error))
    if o.seccomp and (not tries or "Operation not permitted" not in tries[0][0] or tries[0][1] == 0):
        seen = f"{tries[0][0][:80]!r} (exit {tries[0][1]})" if tries else "nothing"
        problems.append(f"`unshare -U true` gave {seen}, not EPERM")
    how = (f"Seccomp of PID 1 = {want} (filter mode) in and out; in: `unshare -U true` (unshare(CLONE_NEWUSER), "
           "which needs no capability) fails with EPERM")
    return _row("seccomp", how, problems)


def check_masked(o: Observed) -> Row:
    from pycontain.oci import MASKED_PATHS

    stats = {}
    for line in _section(o.ns, "masked", o.ns_error).splitlines():
        parts = line.split("|")
        if len(parts) == 3:
            stats[parts[0]] = (parts[1], parts[2])
    mounts = mountinfo(_section(o.ns, "mounts", o.ns_error))
    problems = []
    here = [p for p in MASKED_PATHS if o.host_paths.get(p)]
    for path in here:
        if o.host_paths[path] == "dir":
            opts, fstype, _ = mounts.get(path, ("", "", ""))
            if fstype != "tmpfs" or "ro" not in opts.split(","):
                problems.append(f"{path} is " + (f"a {fstype} mount ({opts})" if fstype else "not masked (no mount)"))
        else:
            kind, numbers = stats.get(path, ("missing", ""))
            if kind != "character special file" or numbers != "1:3":
                problems.append(f"{path} is a {kind} {numbers}".rstrip() + ", not /dev/null")
    how = (f"in: the {len(here)} of the {len(MASKED_PATHS)} masked paths this kernel has: files are /dev/null "
           "(char 1:3, stat), directories an empty read-only tmpfs (mountinfo)")
    return _row("masked paths", how, problems)


def check_readonly(o: Observed) -> Row:
    from pycontain.oci import READONLY_PATHS

    mounts = mountinfo(_section(o.ns, "mounts", o.ns_error))
    problems = []
    here = [p for p in READONLY_PATHS if o.host_paths.get(p)]
    for path in [*here, "/sys"]:
        opts = mounts.get(path, ("",))[0]
        if "ro" not in opts.split(","):
            problems.append(f"{path} is " + (f"mounted {opts}" if opts else "not a mount of its own"))
    tries = attempts(o.ns["write"]) if "write" in o.ns else []
    if not tries:
        problems.append("the write to /proc/sys/kernel/hostname was not tried (the UTS namespace is the host's)")
    elif "Read-only file system" not in tries[0][0] or tries[0][1] == 0:
        problems.append(f"writing /proc/sys/kernel/hostname gave {tries[0][0][:80]!r} (exit {tries[0][1]}), not EROFS")
    how = (f"in: {', '.join(here)} and /sys are read-only mounts (mountinfo); writing /proc/sys/kernel/hostname "
           "fails with EROFS")
    return _row("read-only paths", how, problems)


def expected_dev() -> tuple[set[str], dict[str, tuple[int, int]]]:
    """The default /dev: the device nodes and links pycontain makes, and the mounts below /dev."""
    from pycontain import mounts, oci

    dirs = {m["destination"][5:] for m in oci.default_mounts() if m["destination"].startswith("/dev/")}
    return set(mounts.DEVICES) | set(mounts.DEV_LINKS) | dirs, dict(mounts.DEVICES)


def check_dev(o: Observed) -> Row:
    names, nodes = expected_dev()
    seen = set(_section(o.ns, "devnames", o.ns_error).split())
    problems = []
    if seen - names:
        problems.append("unexpected in /dev: " + " ".join(sorted(seen - names)))
    if names - seen:
        problems.append("missing from /dev: " + " ".join(sorted(names - seen)))
    for line in _section(o.ns, "devstat", o.ns_error).splitlines():
        parts = line.split("|")
        if len(parts) != 3:
            continue
        path, kind, numbers = parts
        name = path.removeprefix("/dev/")
        if kind in ("block special file", "character special file"):
            major, _, minor = numbers.partition(":")
            try:
                found = (int(major, 16), int(minor, 16))  # stat %t:%T print them in hex
            except ValueError:
                found = (-1, -1)
            if kind != "character special file" or nodes.get(name) != found:
                problems.append(f"{path} is a {kind} {found[0]}:{found[1]}")
    how = (f"in: ls -A /dev lists exactly {' '.join(sorted(names))}; each node has its documented "
           "major:minor, no block device")
    return _row("/dev", how, problems)


def check_userns(o: Observed) -> Row:
    if o.userns_skip:
        return Row("user namespace", "--userns=auto: /proc/self/uid_map not the identity", f"skipped: {o.userns_skip}")
    uid_map = [line.split() for line in _section(o.userns, "uidmap", o.userns_error).splitlines() if line.split()]
    gid_map = [line.split() for line in _section(o.userns, "gidmap", o.userns_error).splitlines() if line.split()]
    problems = []
    host_uid = host_gid = ""
    for what, table in (("uid_map", uid_map), ("gid_map", gid_map)):
        if not table or len(table[0]) != 3:
            problems.append(f"{what} unreadable")
        elif table[0][:2] == ["0", "0"]:
            problems.append(f"{what} maps root to the host's root ({' '.join(table[0])})")
    if uid_map and len(uid_map[0]) == 3:
        host_uid = uid_map[0][1]
    if gid_map and len(gid_map[0]) == 3:
        host_gid = gid_map[0][1]
    st = status_fields(o.userns_status)
    for key, want in (("Uid", host_uid), ("Gid", host_gid)):
        value = st.get(key, "").split()[:1]
        if value != [want]:
            problems.append(f"from the host, its root's {key} is {value[0] if value else 'unreadable'}, not {want}")
    how = (f"--userns=auto; in: uid_map {' '.join(uid_map[0]) if uid_map else '?'} (root is host uid "
           f"{host_uid or '?'}); out: its PID 1 runs as uid {st.get('Uid', '?').split()[0]} on the host")
    return _row("user namespace", how, problems)


CHECKS = (check_pid, check_mount, check_uts, check_ipc, check_net, check_cgroup, check_memory, check_pids,
          check_caps, check_nnp, check_seccomp, check_masked, check_readonly, check_dev, check_userns)


def decide(o: Observed) -> list[Row]:
    """Every claim's row. An observation that is missing or garbled fails its claim, with why."""
    rows = []
    for claim, check in zip(CLAIMS, CHECKS):
        try:
            rows.append(check(o))
        except Missing as e:
            rows.append(Row(claim, "(not observed)", f"FAILED: {e}"))
        except (ValueError, KeyError, IndexError) as e:
            rows.append(Row(claim, "(not observed)", f"FAILED: unexpected output ({type(e).__name__}: {e})"))
    return rows


def failed(rows: list[Row]) -> list[Row]:
    return [r for r in rows if not (r.result == "ok" or r.result.startswith("skipped"))]


def table(rows: list[Row], width: int = 120) -> str:
    """The rows as a three-column text table, the long cells wrapped."""
    import textwrap

    claim_w = max(len("CLAIM"), *(len(r.claim) for r in rows))
    result_w = max(24, min(40, width // 4))
    how_w = min(max(30, width - claim_w - result_w - 4), max(len(r.how) for r in rows))
    out = [f"{'CLAIM':<{claim_w}}  {'HOW IT WAS CHECKED':<{how_w}}  RESULT"]
    for r in rows:
        how = textwrap.wrap(r.how, how_w) or [""]
        result = textwrap.wrap(r.result, result_w) or [""]
        for i in range(max(len(how), len(result))):
            left = r.claim if i == 0 else ""
            mid = how[i] if i < len(how) else ""
            out.append(f"{left:<{claim_w}}  {mid:<{how_w}}  {result[i] if i < len(result) else ''}".rstrip())
    return "\n".join(out)


# ---------------------------------------------------------------- running the containers

class Probe:
    """One container: its flags and script, its attach connection, what it printed."""

    def __init__(self, key: str, name: str, flags: list[str], script: str) -> None:
        self.key, self.name, self.flags, self.script = key, name, flags, script
        self.sock = -1
        self.buf = bytearray()
        self.out = bytearray()
        self.err = bytearray()
        self.exit: int | None = None
        self.error = ""
        self.ready = False
        self.rec: Any = None

    @property
    def argv(self) -> list[str]:
        return ["sh", "-c", self.script]

    def sections(self) -> dict[str, str]:
        return sections(self.out.decode(errors="replace"))

    def problem(self) -> str:
        """Why it printed less than it should: its start error, exit code, stderr."""
        parts = [self.error] if self.error else []
        if self.exit not in (None, 0, 137):
            parts.append(f"exit {self.exit}")
        err = self.err.decode(errors="replace").strip()
        if err:
            parts.append("stderr: " + err.splitlines()[-1][:120])
        return "; ".join(parts)


def start(paths: Any, image: str, probe: Probe) -> None:
    """Create and start the container as `run -d -i` with these flags, this process as its first
    attach client (as `start -ai` does): not a byte of its output is missed, its stdin is ours."""
    import _socket

    from pycontain import cli, runtime

    args = ["-d", "-i", "--network", "none", "--pull", "never", "--entrypoint", "", "--name", probe.name,
            *probe.flags, image, *probe.argv]
    opts, pos = cli.parse_options(cli.COMMANDS["run"][0], args, "run")
    cfg = cli.config_from(opts, pos)
    # The socket pair before the record: from create on, nothing may fail before start_detached takes
    # the lock fd over (this process would hold the lock that removing the container waits for).
    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    probe.sock = ours.detach()
    rec, lock_fd = runtime.create(paths, cfg)
    probe.rec = rec
    runtime.start_detached(rec, lock_fd, attach_fd=theirs.detach())


def _send(probe: Probe, line: str) -> None:
    from pycontain import attach

    data = attach.frame(attach.STDIN, (line + "\n").encode())
    while data:
        data = data[os.write(probe.sock, data):]


def _read(probe: Probe) -> None:
    """Take what the monitor sent: output frames, and the exit code at the end."""
    from pycontain import attach

    try:
        data = os.read(probe.sock, 65536)
    except OSError:
        data = b""
    if not data:
        probe.error = probe.error or f"the {probe.key} container's monitor went away before it exited"
        probe.exit = -1 if probe.exit is None else probe.exit
        return
    probe.buf += data
    for kind, payload in attach.frames(probe.buf):
        if kind == attach.STDOUT:
            probe.out += payload
        elif kind == attach.STDERR:
            probe.err += payload
        elif kind == attach.EXIT:
            probe.exit = int(payload) if payload.lstrip(b"-").isdigit() else -1


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        return f"unreadable: {e.strerror}"


def _namespaces(pid: int | str) -> dict[str, str]:
    out = {}
    for kind in NAMESPACES:
        try:
            out[kind] = os.readlink(f"/proc/{pid}/ns/{kind}")
        except OSError:
            pass
    return out


class HostObjects:
    """The host mount and SysV segment a container must not see, made while it runs; removed in
    close() on every path."""

    def __init__(self, token: str) -> None:
        self.token = f"pycontain-verify-{token}"
        self.dir = ""
        self.mounted = False
        self.shm_id = -1
        self.shm_key = 0

    def mount(self) -> tuple[bool, str]:
        import tempfile

        from pycontain import syscalls

        try:
            self.dir = tempfile.mkdtemp(prefix=f"{self.token}.")
            # MS_NOSUID | MS_NODEV | MS_NOEXEC: a 4 KiB tmpfs that nothing will ever run from.
            syscalls.mount(self.token, self.dir, "tmpfs", 0x2 | 0x4 | 0x8, "size=4k,mode=0700")
            self.mounted = True
        except OSError as e:
            return False, f"{e.strerror or e}"
        return any(src == self.token for _, _, src in mountinfo(_read_text("/proc/self/mountinfo")).values()), ""

    def shm(self) -> tuple[bool, str]:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.shmget.argtypes = (ctypes.c_int, ctypes.c_size_t, ctypes.c_int)
        for _ in range(8):  # a random key; another one if it is taken
            key = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF or 1
            shm_id = libc.shmget(key, 4096, 0o1000 | 0o2000 | 0o600)  # IPC_CREAT | IPC_EXCL | 0600
            if shm_id >= 0:
                self.shm_id, self.shm_key = shm_id, key
                break
            if ctypes.get_errno() != 17:  # EEXIST
                return False, os.strerror(ctypes.get_errno())
        else:
            return False, "no free key"
        listed = {line.split()[0] for line in _read_text("/proc/sysvipc/shm").splitlines()[1:] if line.split()}
        return str(self.shm_key) in listed, ""

    def close(self) -> None:
        if self.shm_id >= 0:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.shmctl(self.shm_id, 0, None)  # IPC_RMID
            self.shm_id = -1
        if self.mounted:
            from pycontain import syscalls

            try:
                syscalls.umount2(self.dir, 2)  # MNT_DETACH
            except OSError:
                pass
            self.mounted = False
        if self.dir:
            try:
                os.rmdir(self.dir)
            except OSError:
                pass
            self.dir = ""


def remove(paths: Any, name: str) -> None:
    """Remove a container of ours by name, whatever state it got to. One whose monitor is still
    starting it is let run first (it has no PID to kill yet, and `rm -f` would wait for it to end:
    a script waiting for our answer never does)."""
    from pycontain import runtime, state

    try:
        rec = state.find(paths, name)
    except PycontainError:
        return  # never created, or its create was undone
    deadline = time.monotonic() + 10
    try:
        while rec.is_locked() and runtime.live_pid(rec) is None and time.monotonic() < deadline:
            time.sleep(0.005)
    except (OSError, ValueError):
        pass
    try:
        runtime.remove(paths, rec.id, force=True, volumes=True)
    except PycontainError:
        pass


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP: cleaned up and reported like Ctrl-C."""


STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


class Deferred:
    """A step that makes something only its own end can undo (a record and the lock fd `create`
    returns before `start_detached` hands it to the monitor; a mount before it is noted): Ctrl-C,
    SIGTERM and SIGHUP wait until the step is done, then interrupt as usual. An exception cut into
    such a step would leave this process holding the container's lock, and `rm -f` waiting on it.

    Python-level handlers, not a blocked signal mask: a monitor forked meanwhile would pass the mask
    on to the container it execs (a handler is reset by execve).
    """

    def __enter__(self) -> Deferred:
        self.pending: int | None = None
        self.saved: dict[int, Any] = {s: signal.signal(s, self._note) for s in STOPS}
        return self

    def _note(self, signum: int, _frame: object) -> None:
        self.pending = self.pending or signum

    def __exit__(self, *exc: object) -> None:
        for s, handler in self.saved.items():
            signal.signal(s, handler)
        if self.pending is not None and exc[0] is None:
            handler = self.saved[self.pending]
            if callable(handler):
                handler(self.pending, None)  # raises KeyboardInterrupt (or Interrupted)


def observe(paths: Any, image: str, with_userns: str) -> Observed:
    """Start the containers, watch them from outside, collect everything; remove it all on any path.
    with_userns: "" to check --userns=auto, else why it is skipped."""
    from pycontain import config
    from pycontain.oci import MASKED_PATHS, READONLY_PATHS

    token = os.urandom(4).hex()
    default = config.Security()
    o = Observed(caps=tuple(default.capabilities()), no_new_privs=default.no_new_privs,
                 seccomp=default.seccomp != "unconfined", userns_skip=with_userns)
    o.host_ns = _namespaces("self")
    for p in (*MASKED_PATHS, *READONLY_PATHS):
        o.host_paths[p] = "dir" if os.path.isdir(p) else "file" if os.path.exists(p) else ""
    host = HostObjects(token)
    ns = Probe("ns", f"verify-{token}", [], ns_script(tuple(p for p in MASKED_PATHS if o.host_paths[p] == "file")))
    limits = Probe("limits", f"verify-{token}-limits", ["--memory", f"{MEMORY_LIMIT >> 20}m", "--pids-limit",
                                                        str(PIDS_LIMIT)], limits_script())
    probes = [ns, limits]
    if not with_userns:
        probes.append(Probe("userns", f"verify-{token}-userns", ["--userns", "auto"], userns_script()))
    o.argv = ns.argv
    handlers = {s: signal.signal(s, _interrupt) for s in STOPS if s != signal.SIGINT}
    try:
        o.host_hostname = (os.uname().nodename, "")
        for probe in probes:
            try:
                with Deferred():
                    start(paths, image, probe)
            except PycontainError as e:
                probe.error = f"the {probe.key} container did not start: {e}"
                probe.exit = getattr(e, "exit_code", 125)
        _watch(paths, probes, o, host)
        o.host_hostname = (o.host_hostname[0], os.uname().nodename)
        if ns.rec is not None:
            o.cid = ns.rec.id
            o.hostname = ns.rec.resolved.hostname
        if limits.rec is not None and limits.exit is not None and not limits.error:
            from pycontain import runtime

            with Deferred():  # wait's lock fd is closed before an interrupt
                runtime.wait(paths, limits.rec.id)  # its monitor has written the final state
                st = limits.rec.read_state()
            o.limits_exit, o.limits_oom = st.exit_code, st.oom_killed
    finally:
        # Removal must not be cut short by a second Ctrl-C: the signals wait until it is done.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
        try:
            for probe in probes:
                if probe.sock >= 0:
                    os.close(probe.sock)
                    probe.sock = -1
            for probe in probes:
                remove(paths, probe.name)
            host.close()
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    for probe in probes:
        found, why = probe.sections(), probe.problem()
        if probe is ns:
            o.ns, o.ns_error = found, why
        elif probe is limits:
            o.limits, o.limits_error = found, why
        else:
            o.userns, o.userns_error = found, why
    return o


def _watch(paths: Any, probes: list[Probe], o: Observed, host: HostObjects) -> None:
    """Relay until every container has exited, answering each one's `@@ready` after looking at it."""
    from pycontain import runtime

    deadline = time.monotonic() + TIMEOUT
    live = [p for p in probes if p.sock >= 0 and p.exit is None]
    while live:
        left = deadline - time.monotonic()
        if left <= 0:
            for p in live:
                p.error = f"the {p.key} container did not answer within {TIMEOUT:g} s"
            return
        try:
            ready, _, _ = select.select([p.sock for p in live], [], [], left)
        except InterruptedError:
            continue
        for p in [p for p in live if p.sock in ready]:
            _read(p)
            if not p.ready and f"\n{MARK}ready\n" in "\n" + p.out.decode(errors="replace"):
                p.ready = True
                pid = runtime.live_pid(p.rec)
                with Deferred():  # the host objects are noted as soon as they exist
                    line = answer(p, pid, o, host)
                _send(p, line)
            if p.exit is not None:
                live.remove(p)


def answer(p: Probe, pid: int | None, o: Observed, host: HostObjects) -> str:
    """Look at a container that waits for us from outside (and make the host objects it must not
    see); the line it gets back."""
    if pid is None:
        return ""
    if p.key == "ns":
        o.ctr_ns = _namespaces(pid)
        o.ctr_status = _read_text(f"/proc/{pid}/status")
        o.ctr_cgroup = _read_text(f"/proc/{pid}/cgroup")
        o.mount_token = host.token
        o.mount_on_host, o.mount_error = host.mount()
        o.shm_on_host, o.shm_error = host.shm()
        o.shm_key = host.shm_key
        # Only in a UTS namespace of its own may the script try to change the hostname.
        uts_own = bool(o.ctr_ns.get("uts")) and o.ctr_ns.get("uts") != o.host_ns.get("uts")
        return "write" if uts_own else "nowrite"
    if p.key == "limits":
        for controllers, path in _cgroup_lines(_read_text(f"/proc/{pid}/cgroup")):
            found = set(controllers.split(","))
            if "memory" in found:
                o.limits_host["memory"] = _read_text(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes").strip()
            if "pids" in found:
                o.limits_host["pids"] = _read_text(f"/sys/fs/cgroup/pids{path}/pids.max").strip()
            if controllers == "" and os.path.exists(f"/sys/fs/cgroup{path}/memory.max"):  # v2
                o.limits_host["memory"] = _read_text(f"/sys/fs/cgroup{path}/memory.max").strip()
                o.limits_host["pids"] = _read_text(f"/sys/fs/cgroup{path}/pids.max").strip()
        return "go"
    o.userns_status = _read_text(f"/proc/{pid}/status")
    return "go"


# ---------------------------------------------------------------- the command

def default_image(paths: Any) -> str:
    from pycontain.images.store import Store

    try:
        Store(paths).resolve(DEFAULT_IMAGE)
    except ImageNotFound:
        raise PycontainError(
            f"no image given and the built-in {DEFAULT_IMAGE} image is not installed: `sudo scripts/install` "
            "loads it (or `python3 rootfs/build.py --docker-archive busybox.tar && pycontain load -i "
            "busybox.tar`), or name one: pycontain verify IMAGE") from None
    return DEFAULT_IMAGE


def userns_skip_reason() -> str:
    """Why --userns=auto cannot be checked here ("" when it can)."""
    from pycontain import userns

    try:
        userns.slots()
    except PycontainError as e:
        return str(e).removeprefix("--userns=auto: ")
    return ""


def cmd_verify(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    import shutil

    if len(pos) > 1:
        raise UsageError("verify takes at most one image: pycontain verify [IMAGE]")
    if pos:
        from pycontain.images.store import Store

        Store(paths).resolve(pos[0])  # an unknown image: its one line (exit 125) before anything starts
    image = pos[0] if pos else default_image(paths)
    started = time.monotonic()
    o = observe(paths, image, userns_skip_reason())
    rows = decide(o)
    bad = failed(rows)
    skipped = sum(r.result.startswith("skipped") for r in rows)
    print(table(rows, shutil.get_terminal_size((120, 24)).columns))
    # What went wrong with the containers themselves, once, when it may explain a failure.
    o_errors = dict.fromkeys(e for e in (o.ns_error, o.limits_error, o.userns_error) if e and bad)
    for e in o_errors:
        print(f"\n{e}")
    if any("did not start" in e for e in o_errors):
        print("verify runs busybox applets in the image: sh, cat, ls, stat, unshare, hostname, sleep, dd")
    print(f"\n{len(rows)} claims on {image}: {len(rows) - len(bad) - skipped} ok"
          + (f", {skipped} skipped" if skipped else "") + (f", {len(bad)} FAILED" if bad else "")
          + f" ({time.monotonic() - started:.2f} s)")
    return 1 if bad else 0


HANDLERS = {"verify": cmd_verify}
