"""cgroup v2: one unified hierarchy; controllers are handed down through cgroup.subtree_control."""

from __future__ import annotations

import os
import struct

from pycontain import explain
from pycontain.cgroups import CGROUP_ROOT
from pycontain.cgroups.base import (DEFAULT_DEVICE_RULES, Cgroup, host_memory, keyed, read, read_int, write,
                                    write_blkio_weight)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pycontain.config import Limits

WANTED = ("cpu", "cpuset", "memory", "pids", "io")
CFS_PERIOD_US = 100_000


class CgroupV2(Cgroup):
    version = 2

    def roots(self) -> list[str]:
        return [CGROUP_ROOT]

    def dirs(self) -> list[str]:
        return [f"{CGROUP_ROOT}/{self.name}"]

    def create(self, limits: Limits) -> None:
        _enable_controllers(CGROUP_ROOT)
        path = self.dirs()[0]
        self.make_dir(path, _enable_controllers)
        self.apply(limits)

    def apply(self, limits: Limits) -> None:
        path = self.dirs()[0]
        _set(path, "pids.max", "max" if limits.pids is None else str(limits.pids))
        if limits.memory is not None:
            _set(path, "memory.max", str(limits.memory))
            swap = limits.memory_swap if limits.memory_swap is not None else 2 * limits.memory
            # v2 limits swap alone; Docker's --memory-swap counts memory plus swap.
            _set(path, "memory.swap.max", "max" if swap == -1 else str(max(0, swap - limits.memory)))
        if limits.memory_reservation is not None:
            _set(path, "memory.low", str(limits.memory_reservation))
        if limits.cpus is not None:
            period = limits.cpu_period or CFS_PERIOD_US
            _set(path, "cpu.max", f"{round(limits.cpus * period)} {period}")
        if limits.cpu_shares is not None:
            # v1 shares 2..262144 map onto v2 weight 1..10000 (the mapping runc and crun use).
            _set(path, "cpu.weight", str(1 + ((limits.cpu_shares - 2) * 9999) // 262142))
        if limits.cpuset_cpus is not None:
            _set(path, "cpuset.cpus", limits.cpuset_cpus)
        if limits.cpuset_mems:
            _set(path, "cpuset.mems", limits.cpuset_mems)
        if limits.blkio_weight is not None:
            # BFQ's io.bfq.weight takes --blkio-weight's 10..1000 as it is; io.cost's io.weight is
            # 1..10000 (the linear mapping runc uses). The first one present wins.
            weight = limits.blkio_weight
            write_blkio_weight(path, (("io.bfq.weight", str(weight)),
                                      ("io.weight", str(1 + (weight - 10) * 9999 // 990))))

    def oom_killed(self) -> bool:
        return keyed(read(f"{self.dirs()[0]}/memory.events")).get("oom_kill", 0) > 0

    def stats(self) -> dict[str, int]:
        path = self.dirs()[0]
        limit_text = read(f"{path}/memory.max").strip()
        host = host_memory()
        limit = int(limit_text) if limit_text.isdigit() else host
        cache = keyed(read(f"{path}/memory.stat")).get("inactive_file", 0)
        read_bytes = write_bytes = 0
        for line in read(f"{path}/io.stat").splitlines():
            for field in line.split()[1:]:
                key, _, value = field.partition("=")
                if key == "rbytes":
                    read_bytes += int(value)
                elif key == "wbytes":
                    write_bytes += int(value)
        return {
            "cpu_ns": keyed(read(f"{path}/cpu.stat")).get("usage_usec", 0) * 1000,
            "memory": max(0, read_int(f"{path}/memory.current") - cache),
            "memory_limit": min(limit, host) if host else limit,
            "pids": read_int(f"{path}/pids.current"),
            "blk_read": read_bytes,
            "blk_write": write_bytes,
        }

    def inside_mounts(self) -> list[tuple[str, str, str]]:
        return [("cgroup2", "", "")]

    def bind_mounts(self) -> list[tuple[str, str, str]]:
        return [("bind", "", self.dirs()[0])]

    def freeze(self, frozen: bool) -> None:
        path = self.dirs()[0]
        write(f"{path}/cgroup.freeze", "1" if frozen else "0")
        for _ in range(1000):
            if keyed(read(f"{path}/cgroup.events")).get("frozen", 0) == int(frozen):
                return
            import time

            time.sleep(0.001)
        from pycontain.errors import PycontainError

        raise PycontainError("the cgroup did not settle into the freezer state")

    def frozen(self) -> bool:
        return keyed(read(f"{self.dirs()[0]}/cgroup.events")).get("frozen", 0) == 1

    def devices(self, rules: list[dict[str, object]]) -> None:
        """linux.resources.devices (then the runtime's defaults) as a BPF_PROG_TYPE_CGROUP_DEVICE program
        attached to the cgroup: v2 has no devices.allow file; the kernel runs the program on every open
        and mknod of a device node by a process of the cgroup (or of a cgroup below it).

        Attached with BPF_F_ALLOW_MULTI, so a container may attach filters to cgroups of its own below
        (a runtime inside); the kernel then runs every program from the root down, and all must allow.
        The attachment holds the program: our descriptor is closed at once, and the program goes when
        the cgroup is removed. A program attached before (a cgroup that already existed) is detached
        once the new one is in place, so the rules given here are the cgroup's, as on v1.
        """
        from pycontain import syscalls
        from pycontain.errors import PycontainError

        program = device_program(list(rules) + DEFAULT_DEVICE_RULES)
        path = self.dirs()[0]
        try:
            cgroup_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                before = syscalls.bpf_prog_query(cgroup_fd, syscalls.BPF_CGROUP_DEVICE)
                if program is not None:
                    prog_fd = syscalls.bpf_prog_load(syscalls.BPF_PROG_TYPE_CGROUP_DEVICE, program)
                    try:
                        syscalls.bpf_prog_attach(cgroup_fd, prog_fd, syscalls.BPF_CGROUP_DEVICE,
                                                 syscalls.BPF_F_ALLOW_MULTI)
                    finally:
                        os.close(prog_fd)
                for prog_id in before:
                    old_fd = syscalls.bpf_prog_get_fd_by_id(prog_id)
                    try:
                        syscalls.bpf_prog_detach(cgroup_fd, old_fd, syscalls.BPF_CGROUP_DEVICE)
                    finally:
                        os.close(old_fd)
            finally:
                os.close(cgroup_fd)
        except OSError as e:
            raise PycontainError(f"cannot restrict device access of cgroup {self.name}: {e.strerror or e}") from None
        if program is None:
            explain.say(f"device rules allow every device: no filter attached to {path}")
        else:
            explain.say(f"bpf(BPF_PROG_LOAD) of a {len(program) // 8}-instruction device filter, "
                        f"BPF_PROG_ATTACH to {path}: cgroup v2 decides device access with a BPF program")

    def kill(self) -> None:
        path = f"{self.dirs()[0]}/cgroup.kill"  # Linux 5.14+: the kernel kills every member at once
        if os.path.exists(path):
            try:
                write(path, "1")
            except OSError:
                pass
        super().kill()


def _set(path: str, name: str, value: str) -> None:
    target = f"{path}/{name}"
    if not os.path.exists(target):
        from pycontain.errors import PycontainError

        raise PycontainError(f"this host's cgroup v2 has no {name} (controller not enabled); cannot apply the limit")
    write(target, value)


def _enable_controllers(path: str) -> None:
    """Hand the controllers pycontain uses down from `path` to the cgroups below it."""
    try:
        with open(f"{path}/cgroup.controllers") as f:
            available = set(f.read().split())
        with open(f"{path}/cgroup.subtree_control") as f:
            enabled = set(f.read().split())
    except OSError:
        return
    missing = [c for c in WANTED if c in available and c not in enabled]
    if missing:
        write(f"{path}/cgroup.subtree_control", " ".join(f"+{c}" for c in missing))


# ---------------------------------------------------------------- device rules as a BPF program
#
# The program is written here, instruction by instruction, rather than with a BPF library or compiler:
# it needs eight kinds of instruction, each an 8-byte struct, and a device filter is a straight list of
# comparisons. A library (libbpf, bcc) would be a dependency and a load on every start for ~60 lines.
#
# Semantics: those of the v1 devices controller, as the rules are written in order. An "a" rule resets
# everything (allow or deny all, forgetting the rules before it); each later rule allows or denies some
# accesses (r, w, m) of the devices it matches, overriding earlier rules for those accesses. With no "a"
# rule the start is "allow all" (a new v1 cgroup inherits the root's allow-all). An access request may
# carry several bits (open O_RDWR asks for r and w); it is allowed only if every bit is. Each bit is
# decided by the last rule that matches the device and names that access. (Where v1 keeps an exception
# list, a deny of one device under an earlier wildcard allow can leave it allowed; here the later rule
# always wins, as the spec's order says.)
#
# struct bpf_cgroup_dev_ctx: u32 access_type (device type in the low 16 bits, access in the high 16),
# u32 major, u32 minor. The program returns 1 to allow, 0 to deny (EPERM).

DEV_BLOCK, DEV_CHAR = 1, 2  # BPF_DEVCG_DEV_*
ACCESS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
DEVICE_TYPES = {"b": DEV_BLOCK, "c": DEV_CHAR}
# struct bpf_insn opcodes: class | operation | source (K: the immediate, X: a register).
LDX_MEM_W = 0x61  # dst = *(u32 *)(src + off)
ALU64_MOV_K, ALU64_MOV_X = 0xB7, 0xBF
ALU64_AND_K, ALU64_RSH_K = 0x57, 0x77
JMP_JA, JMP_JEQ_K, JMP_JNE_K, JMP_JSET_K = 0x05, 0x15, 0x55, 0x45
JMP_EXIT = 0x95
# Registers: r1 the context; r2 the access bits still undecided; r3 the device type; r4 major; r5 minor.
R0, R1, R2, R3, R4, R5 = range(6)
ALLOW, DENY = "allow", "deny"


def effective_rules(rules: list[dict[str, object]]) -> tuple[bool, list[tuple[bool, int, int | None, int | None, int]]]:
    """(allow by default, the rules after the last "a" rule as (allow, type, major, minor, access bits)).
    A major or minor of None or -1 is a wildcard; a rule whose number no device can have matches nothing."""
    default_allow = True
    out: list[tuple[bool, int, int | None, int | None, int]] = []
    for rule in rules:
        kind = str(rule.get("type") or "a")
        allow = bool(rule.get("allow"))
        if kind == "a":
            default_allow, out = allow, []
            continue
        major, minor = (None if rule.get(k) in (None, -1) else int(str(rule[k])) for k in ("major", "minor"))
        # dev_t holds a 12-bit major and a 20-bit minor: a rule naming a larger number matches nothing.
        if (major is not None and not 0 <= major <= 0xFFF) or (minor is not None and not 0 <= minor <= 0xFFFFF):
            continue
        access = 0
        for letter in str(rule.get("access") or "rwm"):
            access |= ACCESS[letter]
        out.append((allow, DEVICE_TYPES[kind], major, minor, access))
    # A rule followed by one of the same verdict for the same devices and at least its accesses can never
    # decide anything (the later one, checked first, already did): the runtime's defaults repeat the
    # front end's, and each rule costs the verifier at every load.
    kept: list[tuple[bool, int, int | None, int | None, int]] = []
    for i, this in enumerate(out):
        if not any(later[:4] == this[:4] and later[4] & this[4] == this[4] for later in out[i + 1:]):
            kept.append(this)
    return default_allow, kept


def device_program(rules: list[dict[str, object]]) -> bytes | None:
    """The eBPF program deciding device access as `rules` say; None if they allow every access."""
    default_allow, effective = effective_rules(rules)
    if default_allow and all(allow for allow, *_ in effective):
        return None
    # (code, dst, src, off, imm); off may be a label (ALLOW, DENY) resolved at the end.
    Insn = tuple[int, int, int, int | str, int]
    code: list[Insn] = [
        (LDX_MEM_W, R2, R1, 0, 0),       # access_type
        (ALU64_MOV_X, R3, R2, 0, 0),
        (ALU64_AND_K, R3, 0, 0, 0xFFFF),  # the device type
        (ALU64_RSH_K, R2, 0, 0, 16),      # the access bits asked for: none decided yet
        (LDX_MEM_W, R4, R1, 4, 0),       # major
        (LDX_MEM_W, R5, R1, 8, 0),       # minor
    ]
    used = {default_allow}
    # The newest rule first: the first rule that matches decides the bits it names.
    for allow, kind, major, minor, access in reversed(effective):
        block: list[Insn] = []
        tail: list[Insn]
        checks = [(R3, kind)] + [(reg, n) for reg, n in ((R4, major), (R5, minor)) if n is not None]
        if allow:
            # These bits are allowed; once no asked-for bit is left undecided, the answer is yes.
            tail = [(ALU64_AND_K, R2, 0, 0, ~access), (JMP_JEQ_K, R2, 0, ALLOW, 0)]
        else:
            # Any asked-for bit still undecided and denied here: the answer is no.
            tail = [(JMP_JSET_K, R2, 0, DENY, access)]
        for i, (reg, value) in enumerate(checks):
            skip = len(checks) - i - 1 + len(tail)  # past the rest of this rule's block
            block.append((JMP_JNE_K, reg, 0, skip, value))
        code += block + tail
        used.add(allow)
    # Falling off the last rule: the default. Only reachable blocks are written (the verifier refuses
    # unreachable instructions).
    ends = [ALLOW, DENY] if default_allow else [DENY, ALLOW]
    labels: dict[str, int] = {}
    for name in ends:
        if (name == ALLOW) in used:
            labels[name] = len(code)
            code += [(ALU64_MOV_K, R0, 0, 0, 1 if name == ALLOW else 0), (JMP_EXIT, 0, 0, 0, 0)]
    out = bytearray()
    for pc, (op, dst, src, off, imm) in enumerate(code):
        if isinstance(off, str):
            off = labels[off] - pc - 1
        out += struct.pack("<BBhi", op, dst | src << 4, off, imm)
    return bytes(out)
