"""Device access as data: oci/devices.py (default rules, --device, --privileged) and the cgroup v2 BPF
program cgroups/v2.py writes from the rules.

The program is run here by a small interpreter of the eBPF instructions it uses, against every device
and access in a table, and compared with two models: the rules' meaning (each access bit decided by the
last rule naming it, from "allow all") and the v1 devices controller's own bookkeeping (a default and an
exception list, as security/device_cgroup.c keeps them). The kernel side is tests/integration/
test_cgroups_devices.py (v1 here, v2 in scripts/vm-test's guest).
"""

from __future__ import annotations

import os
import random
import stat
import struct
from pathlib import Path
from typing import Any

import pytest

from pycontain import syscalls
from pycontain.cgroups import v2
from pycontain.cgroups.base import DEFAULT_DEVICE_RULES
from pycontain.errors import UsageError
from pycontain.oci import devices

Rule = dict[str, Any]
MKNOD, READ, WRITE = 1, 2, 4
LETTERS = {MKNOD: "m", READ: "r", WRITE: "w"}
TYPE_CODES = {"b": 1, "c": 2}
# What the kernel asks: mknod, or an open for reading, writing or both.
REQUESTS = (MKNOD, READ, WRITE, READ | WRITE)
SINGLE_BITS = (MKNOD, READ, WRITE)
# Devices the tables below talk about, and some they never name.
DEVICES = [(kind, major, minor) for kind in "bc" for major in (1, 5, 7, 8, 10, 136, 4095)
           for minor in (0, 1, 3, 5, 9, 200, 0xFFFFF)]


# ---------------------------------------------------------------- an interpreter of the emitted eBPF

def decode(program: bytes) -> list[tuple[int, int, int, int, int]]:
    assert len(program) % 8 == 0
    out = []
    for i in range(0, len(program), 8):
        op, regs, off, imm = struct.unpack_from("<BBhi", program, i)
        out.append((op, regs & 0xF, regs >> 4, off, imm))
    return out


def check_shape(program: bytes) -> None:
    """What the kernel's verifier insists on, for the instructions used here: jumps inside the program
    and only forward (no loops), every instruction reachable, ending in exit."""
    insns = decode(program)
    reachable, todo = set(), [0]
    while todo:
        pc = todo.pop()
        if pc in reachable:
            continue
        assert 0 <= pc < len(insns), f"jump out of the program to {pc}"
        reachable.add(pc)
        op, _, _, off, _ = insns[pc]
        if op == 0x95:
            continue
        if op in (0x05, 0x15, 0x55, 0x45):
            assert off >= 0, "a backward jump"
            todo.append(pc + 1 + off)
        if op != 0x05:
            todo.append(pc + 1)
    assert reachable == set(range(len(insns))), f"unreachable: {set(range(len(insns))) - reachable}"


def run(program: bytes, kind: str, major: int, minor: int, access: int) -> bool:
    """Execute the program on struct bpf_cgroup_dev_ctx {access_type, major, minor}: allowed?"""
    ctx = struct.pack("<III", access << 16 | TYPE_CODES[kind], major, minor)
    regs = [0] * 11
    regs[1] = -1  # the context pointer: only ever used as the base of a load
    insns = decode(program)
    mask = 2**64 - 1
    pc = 0
    while True:
        op, dst, src, off, imm = insns[pc]
        k = imm & mask  # immediates are sign-extended to 64 bits
        if op == 0x61:  # ldxw dst, [src + off]
            assert src == 1 and off in (0, 4, 8)
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif op == 0xB7:
            regs[dst] = k
        elif op == 0xBF:
            regs[dst] = regs[src]
        elif op == 0x57:
            regs[dst] &= k
        elif op == 0x77:
            regs[dst] >>= imm
        elif op == 0x05:
            pc += off
        elif op == 0x15:
            pc += off if regs[dst] == k else 0
        elif op == 0x55:
            pc += off if regs[dst] != k else 0
        elif op == 0x45:
            pc += off if regs[dst] & k else 0
        elif op == 0x95:
            assert regs[0] in (0, 1)
            return regs[0] == 1
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")
        pc += 1


def program_allows(rules: list[Rule], kind: str, major: int, minor: int, access: int) -> bool:
    program = v2.device_program(rules)
    return True if program is None else run(program, kind, major, minor, access)


# ---------------------------------------------------------------- the models

def _matches(rule: Rule, kind: str, major: int, minor: int) -> bool:
    return (rule.get("type") == kind and rule.get("major") in (None, -1, major)
            and rule.get("minor") in (None, -1, minor))


def meaning(rules: list[Rule], kind: str, major: int, minor: int, access: int) -> bool:
    """Each bit asked for is decided by the last rule naming the device and that access; an "a" rule
    decides every device; before any rule, everything is allowed (a new v1 cgroup's inheritance)."""
    for bit in SINGLE_BITS:
        if not access & bit:
            continue
        allowed = True
        for rule in rules:
            if (rule.get("type") or "a") == "a":
                allowed = bool(rule["allow"])
            elif _matches(rule, kind, major, minor) and LETTERS[bit] in (rule.get("access") or "rwm"):
                allowed = bool(rule["allow"])
        if not allowed:
            return False
    return True


class V1Model:
    """The v1 devices controller: a default behaviour and exceptions keyed by (type, major, minor).
    Writing the default's own verb removes access from an exception with exactly that key; the other
    verb adds to it. Default allow: denied if an exception covers any bit asked; default deny: allowed
    only if one exception covers them all."""

    def __init__(self, rules: list[Rule]) -> None:
        self.allow = True
        self.exceptions: dict[tuple[str, int | None, int | None], int] = {}
        for rule in rules:
            self.write(rule)

    def write(self, rule: Rule) -> None:
        kind = rule.get("type") or "a"
        if kind == "a":
            self.allow, self.exceptions = bool(rule["allow"]), {}
            return
        key = (kind, None if rule.get("major") in (None, -1) else rule["major"],
               None if rule.get("minor") in (None, -1) else rule["minor"])
        bits = sum(bit for bit, letter in LETTERS.items() if letter in (rule.get("access") or "rwm"))
        if bool(rule["allow"]) == self.allow:
            if key in self.exceptions:
                self.exceptions[key] &= ~bits
                if not self.exceptions[key]:
                    del self.exceptions[key]
        else:
            self.exceptions[key] = self.exceptions.get(key, 0) | bits

    def allows(self, kind: str, major: int, minor: int, access: int) -> bool:
        found = [bits for (t, ma, mi), bits in self.exceptions.items()
                 if t == kind and ma in (None, major) and mi in (None, minor)]
        if self.allow:
            return not any(bits & access for bits in found)
        return any(access & ~bits == 0 for bits in found)


def random_rule(rng: random.Random, allow: bool | None = None, wildcards: bool = True) -> Rule:
    rule: Rule = {"allow": rng.random() < 0.5 if allow is None else allow, "type": rng.choice("bc"),
                  "access": "".join(sorted(rng.sample("rwm", rng.randint(1, 3))))}
    for key, values in (("major", (1, 5, 7, 8, 136)), ("minor", (0, 1, 3, 5, 200))):
        if wildcards and rng.random() < 0.25:
            rule[key] = rng.choice((None, -1))
        else:
            rule[key] = rng.choice(values)
    return rule


def random_table(rng: random.Random) -> list[Rule]:
    rules = [random_rule(rng) for _ in range(rng.randint(0, 12))]
    for _ in range(rng.randint(0, 2)):  # "a" rules anywhere: each one resets what came before
        rules.insert(rng.randint(0, len(rules)), {"allow": rng.random() < 0.5, "access": "rwm"})
    return rules


# ---------------------------------------------------------------- the program

def test_the_program_means_what_the_rules_say_for_random_tables() -> None:
    rng = random.Random(12)
    for _ in range(200):
        rules = random_table(rng)
        program = v2.device_program(rules)
        if program is not None:
            check_shape(program)
        for kind, major, minor in DEVICES:
            for access in (*REQUESTS, READ | WRITE | MKNOD):
                assert program_allows(rules, kind, major, minor, access) == meaning(rules, kind, major, minor,
                                                                                    access), \
                    (rules, kind, major, minor, access)


def test_the_program_agrees_with_the_v1_controller_where_v1_is_unambiguous() -> None:
    """Tables that only widen or only narrow the default (default deny + allows, as the front end writes
    them, or allow + denies), and tables of exact devices only: one access bit at a time, v1's exception
    list and the program must agree on every device."""
    rng = random.Random(34)
    for n in range(300):
        shape = n % 3
        if shape == 0:
            rules = [{"allow": False, "access": "rwm"}] + [random_rule(rng, True) for _ in range(rng.randint(0, 10))]
        elif shape == 1:
            rules = [random_rule(rng, False) for _ in range(rng.randint(1, 10))]
        else:
            rules = [random_rule(rng, None, wildcards=False) for _ in range(rng.randint(1, 12))]
            if rng.random() < 0.5:
                rules.insert(0, {"allow": False, "access": "rwm"})
        model = V1Model(rules)
        for kind, major, minor in DEVICES:
            for access in SINGLE_BITS:
                assert program_allows(rules, kind, major, minor, access) == model.allows(kind, major, minor, access), \
                    (rules, kind, major, minor, access)


def test_the_containers_default_rules_on_both_models() -> None:
    rules = devices.default_rules() + DEFAULT_DEVICE_RULES
    model = V1Model(rules)
    program = v2.device_program(rules)
    assert program is not None
    check_shape(program)
    for kind, major, minor in DEVICES:
        for access in REQUESTS:
            assert run(program, kind, major, minor, access) == model.allows(kind, major, minor, access)
    # The standard nodes open for reading and writing; any node may be made; a disk cannot be opened.
    for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2), (136, 7)):
        assert run(program, "c", major, minor, READ | WRITE)
    assert run(program, "b", 8, 0, MKNOD) and run(program, "c", 10, 200, MKNOD)
    for kind, major, minor in (("b", 8, 0), ("b", 7, 0), ("c", 10, 200), ("c", 1, 1), ("c", 4, 1)):
        assert not run(program, kind, major, minor, READ)
        assert not run(program, kind, major, minor, WRITE)


def test_a_device_given_read_only_opens_for_reading_only() -> None:
    rules = devices.default_rules() + [{"allow": True, "type": "b", "major": 7, "minor": 3, "access": "r"}]
    rules += DEFAULT_DEVICE_RULES
    assert program_allows(rules, "b", 7, 3, READ)
    assert not program_allows(rules, "b", 7, 3, WRITE)
    assert not program_allows(rules, "b", 7, 3, READ | WRITE)
    assert not program_allows(rules, "b", 7, 4, READ)


def test_a_later_deny_overrides_an_earlier_wildcard_allow() -> None:
    """Where v1's exception list keeps a device allowed (the deny names no exception of its own), the
    program follows the rules' order: the later deny wins."""
    rules = [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "access": "rwm"},
             {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}]
    assert program_allows(rules, "c", 1, 5, WRITE)
    assert program_allows(rules, "c", 1, 3, READ)
    assert not program_allows(rules, "c", 1, 3, WRITE)
    assert not program_allows(rules, "c", 1, 3, READ | WRITE)
    assert V1Model(rules).allows("c", 1, 3, WRITE)  # v1's bookkeeping differs here, as documented


def test_rules_that_allow_everything_need_no_program() -> None:
    assert v2.device_program([]) is None
    assert v2.device_program(DEFAULT_DEVICE_RULES) is None
    assert v2.device_program([{"allow": False, "access": "rwm"}, {"allow": True, "access": "rwm"}]) is None
    assert v2.device_program([{"allow": True, "type": "a", "access": "rwm"}]) is None
    deny_all = v2.device_program([{"allow": False, "access": "rwm"}])
    assert deny_all is not None and not run(deny_all, "c", 1, 3, READ)


def test_numbers_no_device_can_have_match_nothing() -> None:
    rules = [{"allow": False, "type": "c", "major": 1 << 40, "minor": 3, "access": "rwm"},
             {"allow": False, "type": "c", "major": 1, "minor": 1 << 21, "access": "rwm"}]
    assert v2.device_program(rules) is None


# ---------------------------------------------------------------- attaching, with a fake kernel

class FakeBpf:
    errno = 0

    def __init__(self, attached: list[int] | None = None) -> None:
        self.attached = list(attached or [])
        self.calls: list[tuple[Any, ...]] = []
        self.open_fds: set[int] = set()

    def _fd(self) -> int:
        fd = os.open("/dev/null", os.O_RDONLY)
        self.open_fds.add(fd)
        return fd

    def pc_bpf_prog_query(self, fd: int, attach_type: int) -> list[int]:
        self.calls.append(("query", attach_type))
        return list(self.attached)

    def pc_bpf_prog_load(self, prog_type: int, insns: bytes, count: int, license: bytes, log: Any, size: int) -> int:
        self.calls.append(("load", prog_type, count, len(insns)))
        return self._fd()

    def pc_bpf_prog_attach(self, target: int, prog: int, attach_type: int, flags: int) -> int:
        self.calls.append(("attach", attach_type, flags))
        return 0

    def pc_bpf_prog_get_fd_by_id(self, prog_id: int) -> int:
        self.calls.append(("get", prog_id))
        return self._fd()

    def pc_bpf_prog_detach(self, target: int, prog: int, attach_type: int) -> int:
        self.calls.append(("detach", attach_type))
        return 0


@pytest.fixture
def fake_cgroup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> v2.CgroupV2:
    monkeypatch.setattr(v2, "CGROUP_ROOT", str(tmp_path))
    (tmp_path / "pycontain-x").mkdir()
    return v2.CgroupV2("x")


def _still_open(fds: set[int]) -> set[int]:
    out = set()
    for fd in fds:
        try:
            os.fstat(fd)
            out.add(fd)
        except OSError:
            pass
    return out


def test_the_filter_is_attached_with_allow_multi_and_our_fd_closed(fake_cgroup: v2.CgroupV2) -> None:
    kernel = FakeBpf()
    previous = syscalls.install(kernel)
    try:
        fake_cgroup.devices(devices.default_rules())
    finally:
        syscalls.install(previous)
    program = v2.device_program(devices.default_rules() + DEFAULT_DEVICE_RULES)
    assert program is not None
    assert kernel.calls == [("query", syscalls.BPF_CGROUP_DEVICE),
                            ("load", syscalls.BPF_PROG_TYPE_CGROUP_DEVICE, len(program) // 8, len(program)),
                            ("attach", syscalls.BPF_CGROUP_DEVICE, syscalls.BPF_F_ALLOW_MULTI)]
    assert _still_open(kernel.open_fds) == set()


def test_a_filter_attached_before_is_replaced(fake_cgroup: v2.CgroupV2) -> None:
    kernel = FakeBpf(attached=[41])
    previous = syscalls.install(kernel)
    try:
        fake_cgroup.devices([{"allow": False, "access": "rwm"}])
    finally:
        syscalls.install(previous)
    assert [c[0] for c in kernel.calls] == ["query", "load", "attach", "get", "detach"]
    assert ("get", 41) in kernel.calls
    assert _still_open(kernel.open_fds) == set()


# ---------------------------------------------------------------- --device and --privileged

def test_a_character_device_with_the_hosts_numbers_mode_and_owner() -> None:
    st = os.stat("/dev/null")
    [entry] = devices.parse_device("/dev/null:/dev/mynull:rw")
    assert entry["device"] == {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3,
                               "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
                               "hostPath": "/dev/null"}
    assert entry["rule"] == {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}


@pytest.mark.parametrize(("text", "path", "access"), [
    ("/dev/zero", "/dev/zero", "rwm"),
    ("/dev/zero:r", "/dev/zero", "r"),
    ("/dev/zero:/dev/z", "/dev/z", "rwm"),
    ("/dev/zero:/dev/sub/z:mr", "/dev/sub/z", "mr"),
])
def test_device_forms(text: str, path: str, access: str) -> None:
    [entry] = devices.parse_device(text)
    assert (entry["device"]["path"], entry["rule"]["access"]) == (path, access)


@pytest.mark.parametrize(("text", "says"), [
    ("", "expected HOST[:CONTAINER[:PERMISSIONS]]"),
    ("/dev/null:/a:rw:x", "expected HOST[:CONTAINER[:PERMISSIONS]]"),
    (":/dev/null", "expected HOST"),
    ("/dev/no-such-device", "No such file or directory"),
    ("/etc/hostname", "is not a character or block device"),
    ("/dev/null:/dev/x:rx", "permissions 'rx'"),
    ("/dev/null:/dev/x:rr", "permissions 'rr'"),
    ("/dev/null:/dev/x:", "permissions ''"),
    ("/dev/null:rx", "permissions 'rx'"),
    ("/dev/null:dev/x", "must be absolute"),
    ("/dev/null:/", "not a path for a device node"),
    ("/dev/null:/dev/../x", "not a path for a device node"),
])
def test_bad_devices_are_one_clear_error(text: str, says: str) -> None:
    with pytest.raises(UsageError) as e:
        devices.parse_device(text)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_a_directory_without_devices_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to("/dev/null")  # links below a directory are not followed
    with pytest.raises(UsageError, match="no character or block devices"):
        devices.parse_device(str(tmp_path))


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_a_directory_gives_each_device_below_it(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    os.mknod(tmp_path / "a", 0o620 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(tmp_path / "a", 0o620)  # mknod applied the umask
    os.mknod(tmp_path / "sub" / "b", 0o600 | stat.S_IFBLK, os.makedev(7, 9))
    (tmp_path / "plain").write_text("x")
    found = devices.parse_device(f"{tmp_path}:/dev/set:r")
    assert [(e["device"]["path"], e["device"]["type"], e["device"]["fileMode"], e["rule"]["access"])
            for e in found] == [("/dev/set/a", "c", 0o620, "r"), ("/dev/set/sub/b", "b", 0o600, "r")]


def test_privileged_devices_are_the_hosts_without_the_containers_own() -> None:
    found = {e["device"]["path"]: e["device"] for e in devices.privileged_devices()}
    assert found["/dev/null"]["major"] == 1 and found["/dev/null"]["minor"] == 3
    assert not any(p.startswith(("/dev/pts/", "/dev/shm/", "/dev/mqueue/")) for p in found)
    assert "/dev/console" not in found
    for node in found.values():
        assert node["type"] in "cb"


def test_spec_fields() -> None:
    given = devices.parse_device("/dev/zero:/dev/z:r")
    nodes, rules = devices.spec_fields(given)
    assert nodes == [{k: v for k, v in given[0]["device"].items() if k != "hostPath"}]
    assert rules == devices.default_rules() + [given[0]["rule"]]
    assert rules[0] == {"allow": False, "access": "rwm"}
    assert devices.spec_fields([]) == ([], devices.default_rules())
    nodes, rules = devices.spec_fields(given, privileged=True)
    assert rules == [{"allow": True, "access": "rwm"}]
    paths = [n["path"] for n in nodes]
    assert "/dev/null" in paths and "/dev/z" in paths and len(paths) == len(set(paths))


def test_default_rules_pass_the_bundle_checks() -> None:
    from pycontain.oci import validate

    nodes, rules = devices.spec_fields(devices.parse_device("/dev/zero:/dev/z:r"))
    validate.check_resources({"devices": rules}, "linux.resources")
    assert all(set(n) <= set(devices.NODE_KEYS) for n in nodes)


def test_rules_a_later_one_covers_are_left_out() -> None:
    """The runtime's defaults repeat the front end's: the program (what the verifier checks at every
    start) is no longer for the repetition."""
    alone = v2.device_program(devices.default_rules())
    assert alone is not None and v2.device_program(devices.default_rules() + DEFAULT_DEVICE_RULES) == alone
    wider = {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
    narrower = dict(wider, access="r")
    base = [{"allow": False, "access": "rwm"}]
    assert v2.device_program(base + [narrower, wider]) == v2.device_program(base + [wider])
    assert v2.device_program(base + [wider, narrower]) != v2.device_program(base + [wider])
