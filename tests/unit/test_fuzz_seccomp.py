"""Fuzzing seccomp profiles: Docker-format profiles (pycontain/oci/profile.py load/check/resolve) and the
spec's linux.seccomp (pycontain/oci/seccomp.py check/compile).

A profile is either refused in one UsageError, or it resolves, for any capability set, architecture and
kernel, to a linux.seccomp that seccomp.check accepts and libseccomp compiles: what check() lets through,
nothing later may trip over. A spec's linux.seccomp is either refused in one SpecError or compiles.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from typing import Any

import pytest
from fuzz_support import JSON, count, damaged, fuzz, one_line
from hypothesis import given
from hypothesis import strategies as st

from pycontain.errors import PycontainError
from pycontain.oci import profile, seccomp

ACTIONS = [*seccomp.ACTIONS, *seccomp.ACTIONS, "SCMP_ACT_NOTIFY", "SCMP_ACT_BOGUS", "allow", ""]
SYSCALLS = ["read", "write", "mount", "unshare", "clone", "clone3", "keyctl", "personality", "socket", "ptrace",
            "no_such_call", "Read"]
ARCHES = sorted(seccomp.ARCHES)[:6] + ["SCMP_ARCH_NONE", "x86_64", ""]
CAPS = ["CAP_SYS_ADMIN", "CAP_NET_RAW", "CAP_SYS_PTRACE", "SYS_ADMIN", "CAP_NOPE", "ALL"]
KERNELS = ["4.8", "5.10.2", "6.1", "99.0", "x", "5", "5.x.1"]
INT = st.one_of(st.integers(-2, 70), st.integers(0, 2**64 + 1), st.sampled_from([2**32, 2**63, -(2**63)]))


@st.composite
def arg(draw: st.DrawFn) -> dict[str, Any]:
    return {"index": draw(st.integers(-1, 6)), "value": draw(INT), "valueTwo": draw(INT),
            "op": draw(st.sampled_from([*seccomp.OPS, "SCMP_CMP_BOGUS", ""]))}


@st.composite
def condition(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["caps"] = draw(st.lists(st.sampled_from(CAPS), max_size=2))
    if draw(st.booleans()):
        out["arches"] = draw(st.lists(st.sampled_from(["amd64", "arm64", "x86_64", "s390x", "bogus"]), max_size=2))
    if draw(st.booleans()):
        out["minKernel"] = draw(st.sampled_from(KERNELS))
    return out


@st.composite
def rule(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {"names": draw(st.lists(st.sampled_from(SYSCALLS), min_size=1, max_size=3)),
                           "action": draw(st.sampled_from(ACTIONS))}
    if draw(st.booleans()):
        out["errnoRet"] = draw(st.integers(-1, 0x10000))
    if draw(st.booleans()):
        out["args"] = draw(st.lists(arg(), max_size=3))
    for key in ("includes", "excludes"):
        if draw(st.booleans()):
            out[key] = draw(condition())
    return out


@st.composite
def profiles(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 2)) == 0:
        return draw(damaged(copy.deepcopy(profile.default())))
    out: dict[str, Any] = {"defaultAction": draw(st.sampled_from(ACTIONS)),
                           "syscalls": draw(st.lists(rule(), max_size=4))}
    if draw(st.booleans()):
        out["defaultErrnoRet"] = draw(st.integers(-1, 0x10000))
    if draw(st.booleans()):
        out["architectures"] = draw(st.lists(st.sampled_from(ARCHES), max_size=3))
    if draw(st.booleans()):
        out["archMap"] = [{"architecture": draw(st.sampled_from(ARCHES)),
                           "subArchitectures": draw(st.lists(st.sampled_from(ARCHES), max_size=2))}]
    if draw(st.booleans()):
        out["flags"] = draw(st.lists(st.sampled_from([*seccomp.FLAGS, "SECCOMP_FILTER_FLAG_NEW_LISTENER"]),
                                     max_size=2))
    return draw(damaged(out)) if draw(st.integers(0, 2)) == 0 else out  # mostly well-formed: resolve gets work


@fuzz(500)
@given(profiles(), st.lists(st.sampled_from(CAPS[:3]), max_size=3), st.sampled_from([None, "aarch64", "s390x"]),
       st.sampled_from([(4, 4, 0), (5, 10, 0), (6, 8, 0)]))
def test_profiles_check_resolve_and_compile(p: Any, caps: list[str], arch: str | None,
                                            kernel: tuple[int, int, int]) -> None:
    count("seccomp: Docker-format profiles, check/resolve/compile")
    try:
        profile.check(p, "fuzz.json")
    except PycontainError as e:
        one_line(e)
        return
    count("seccomp: ... of which accepted, then resolved and checked")
    spec = profile.resolve(p, caps, arch, kernel=kernel)
    seccomp.check(spec)
    if arch is None:  # this machine's: what a container would really load
        assert isinstance(seccomp.compile(spec), bytes)


@fuzz(600)
@given(st.one_of(JSON, profiles(), st.builds(lambda p: profile.resolve(p, [], kernel=(5, 10, 0)),
                                               st.just(profile.default())).flatmap(damaged)))
def test_spec_seccomp_check_and_compile(value: Any) -> None:
    count("seccomp: linux.seccomp of a spec, check/compile")
    try:
        seccomp.check(value)
        assert isinstance(seccomp.compile(value), bytes)
    except PycontainError as e:
        one_line(e)


@fuzz(400)
@given(st.one_of(st.binary(max_size=80), JSON.map(lambda v: json.dumps(v).encode()),
                 profiles().map(lambda p: json.dumps(p).encode())))
def test_profile_files(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    count("seccomp: profile files (load)")
    fd, path = tempfile.mkstemp(suffix=".json", dir=tmp_path_factory.getbasetemp())
    try:
        os.write(fd, data)
        os.close(fd)
        try:
            assert isinstance(profile.load(path), dict)
        except PycontainError as e:
            one_line(e)
    finally:
        os.unlink(path)
