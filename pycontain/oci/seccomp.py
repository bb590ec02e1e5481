"""A spec's `linux.seccomp`: validated, compiled to a BPF program in the parent, installed in the child.

    compile(seccomp) -> bytes     parent: the untrusted spec object -> struct sock_filter array, compiled
                                  by libseccomp (loaded with dlopen on first use, see syscalls.libseccomp)
    compile_cached(seccomp, dir)  the same, through a cache of compiled programs (see its docstring)
    install(bpf, flags)           child, right before execve: one seccomp(2) call, no libseccomp, no imports

Why the split: libseccomp allocates, resolves names and writes files; none of that belongs in the child
between clone and execve (no imports, no locks there), and a bad profile must fail `create` with a
one-line message, not a half-started container. The child only hands finished bytes to the kernel.

Semantics follow runc where the spec leaves room: syscall names this libseccomp does not know are
skipped (profiles list syscalls of every architecture and kernel version), a rule whose action is the
default action is skipped (libseccomp refuses it and it changes nothing), and a rule comparing the same
argument twice is added as one rule per comparison (libseccomp cannot AND two tests of one argument).
"""

from __future__ import annotations

import errno
import os
import sys

from pycontain import syscalls
from pycontain.oci import array, field_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# libseccomp's SCMP_ACT_* are the kernel's SECCOMP_RET_* values (csrc/syscalls.c asserts them at build
# time); ERRNO and TRACE carry 16 bits of data (errnoRet) in the low half.
ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,  # = KILL_THREAD
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")  # the actions errnoRet applies to (spec: others fail)
EPERM = 1  # the spec's default errnoRet
ERRNO_MAX = 4094  # libseccomp refuses SCMP_ACT_ERRNO(n) for n >= MAX_ERRNO (4095); TRACE takes all 16 bits
# libseccomp's enum scmp_compare (also asserted in csrc/syscalls.c).
OPS = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}
# <linux/seccomp.h> seccomp(2) flags a spec may ask for. NEW_LISTENER (a notification agent) and
# WAIT_KILLABLE_RECV (which only matters with one) are refused along with SCMP_ACT_NOTIFY.
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,  # log every action but ALLOW
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,  # keep speculative store bypass mitigation off
}
# The spec's architecture names; libseccomp's own name is the lower-cased rest ("SCMP_ARCH_X86_64" ->
# "x86_64"). A name in this list that this machine's libseccomp does not know, or of the other byte
# order, is skipped (csrc pc_scmp_arch_add): a profile written for several machines may name them, and
# no process here can make their syscalls.
ARCHES = frozenset(f"SCMP_ARCH_{a}" for a in (
    "X86", "X86_64", "X32", "ARM", "AARCH64", "LOONGARCH64", "M68K", "MIPS", "MIPS64", "MIPS64N32",
    "MIPSEL", "MIPSEL64", "MIPSEL64N32", "PPC", "PPC64", "PPC64LE", "S390", "S390X", "PARISC", "PARISC64",
    "RISCV64", "SH", "SHEB"))
MAX_ARGS = 6  # syscall arguments 0..5
MAX_INSNS = 4096  # BPF_MAXINSNS: the kernel refuses a longer program
INSN_SIZE = 8  # sizeof(struct sock_filter)
FIELD = "linux.seccomp"

# A rule: (field for messages, syscall names, action value, comparisons as (index, op, a, b)).
Rule = tuple[str, list[str], int, list[tuple[int, int, int, int]]]


def _action(obj: dict[str, Any], field: str, action_key: str, errno_key: str) -> int:
    """The action value of obj[action_key], with obj[errno_key] (default EPERM) in its data."""
    name = obj.get(action_key)
    if not isinstance(name, str):
        raise field_error(f"{field}.{action_key}", "must be a string naming an action (SCMP_ACT_...)")
    if name == "SCMP_ACT_NOTIFY":
        raise field_error(f"{field}.{action_key}", "SCMP_ACT_NOTIFY needs a seccomp notification agent, "
                    "which pycontain-oci does not support")
    if name not in ACTIONS:
        raise field_error(f"{field}.{action_key}", f"unknown action {name!r}")
    errno_ret = obj.get(errno_key)
    if errno_ret is None:
        return ACTIONS[name] | (EPERM if name in WITH_ERRNO else 0)
    if name not in WITH_ERRNO:
        raise field_error(f"{field}.{errno_key}", f"only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take one, not {name}")
    return ACTIONS[name] | _uint(errno_ret, f"{field}.{errno_key}", ERRNO_MAX if name == "SCMP_ACT_ERRNO" else 0xFFFF)


def _uint(value: Any, field: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise field_error(field, "must be an integer")
    if not 0 <= value <= high:
        raise field_error(field, f"{value} is out of range (0..{high})")
    return value


def _names(value: Any, field: str, what: str) -> list[str]:
    items = array(value, field)
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item or "\0" in item:
            raise field_error(f"{field}[{i}]", f"must be a {what} name")
    return items


def _args(value: Any, field: str) -> list[tuple[int, int, int, int]]:
    out = []
    for i, arg in enumerate(array(value, field)):
        where = f"{field}[{i}]"
        if not isinstance(arg, dict):
            raise field_error(where, "must be an object")
        index = _uint(arg.get("index"), f"{where}.index", MAX_ARGS - 1)
        op = arg.get("op")
        if not isinstance(op, str) or op not in OPS:  # untrusted: a list or an object is unhashable
            raise field_error(f"{where}.op", f"unknown operator {op!r}" if isinstance(op, str)
                        else "must be a string naming an operator (SCMP_CMP_...)")
        a = _uint(arg.get("value"), f"{where}.value", 2**64 - 1)
        b = _uint(arg.get("valueTwo", 0), f"{where}.valueTwo", 2**64 - 1)
        out.append((index, OPS[op], a, b))
    return out


def check(seccomp: Any) -> tuple[int, list[str], list[str], list[Rule]]:
    """Validate the untrusted object: (default action, arch names, flag names, rules), or SpecError."""
    if not isinstance(seccomp, dict):
        raise field_error(FIELD, "must be an object")
    if seccomp.get("listenerPath"):
        raise field_error(f"{FIELD}.listenerPath", "seccomp notification agents are not supported by pycontain-oci")
    default = _action(seccomp, FIELD, "defaultAction", "defaultErrnoRet")
    arches = _names(seccomp.get("architectures"), f"{FIELD}.architectures", "architecture")
    for i, arch in enumerate(arches):
        if arch not in ARCHES:
            raise field_error(f"{FIELD}.architectures[{i}]", f"unknown architecture {arch!r}")
    flags = _names(seccomp.get("flags"), f"{FIELD}.flags", "flag")
    for i, flag in enumerate(flags):
        if flag not in FLAGS:
            raise field_error(f"{FIELD}.flags[{i}]", f"unsupported flag {flag!r} (supported: {', '.join(FLAGS)})")
    rules: list[Rule] = []
    for i, call in enumerate(array(seccomp.get("syscalls"), f"{FIELD}.syscalls")):
        where = f"{FIELD}.syscalls[{i}]"
        if not isinstance(call, dict):
            raise field_error(where, "must be an object")
        names = _names(call.get("names"), f"{where}.names", "syscall")
        if not names:
            raise field_error(f"{where}.names", "must list at least one syscall")
        action = _action(call, where, "action", "errnoRet")
        rules.append((where, names, action, _args(call.get("args"), f"{where}.args")))
    return default, arches, flags, rules


def compile(seccomp: dict[str, Any]) -> bytes:
    """The spec's linux.seccomp as a BPF program (struct sock_filter array) for install()."""
    default, arches, _, rules = check(seccomp)
    try:
        lib = syscalls.libseccomp()
    except OSError as e:
        raise field_error(FIELD, e.strerror or str(e)) from None
    ctx = lib.pc_scmp_init(default)
    if not ctx:
        raise field_error(f"{FIELD}.defaultAction", "libseccomp refused it (not supported by this kernel?)")
    try:
        # A binary tree of syscall numbers instead of one long chain: the kernel runs the program once per
        # syscall number and ABI when it is loaded (to cache the always-allowed ones), so the chain's length
        # was paid ~1,300 times at every start. Loading the default profile (x86_64, x86, x32) took 0.72 ms
        # as a chain, 0.32 ms as a tree (measured here: fork, install, exit, against fork and exit).
        lib.pc_scmp_optimize(ctx, 2)  # a libseccomp that cannot just builds the chain
        for i, arch in enumerate(arches):
            rc = lib.pc_scmp_arch_add(ctx, arch.removeprefix("SCMP_ARCH_").lower().encode())
            if rc < 0:
                raise field_error(f"{FIELD}.architectures[{i}]", f"libseccomp refused {arch}: {os.strerror(-rc)}")
        for where, names, action, args in rules:
            if action == default:
                continue  # changes nothing, and libseccomp refuses it
            # Two tests of one argument cannot be ANDed in one libseccomp rule: one rule each (as runc).
            indexes = [a[0] for a in args]
            groups = [[a] for a in args] if len(set(indexes)) < len(indexes) else [args]
            for name in names:
                nr = lib.pc_scmp_syscall(name.encode())
                if nr == -1:
                    continue  # unknown to this libseccomp: not a syscall this machine can make
                for group in groups:
                    flat = [v for cmp in group for v in cmp]
                    rc = lib.pc_scmp_rule_add(ctx, action, nr, len(group), flat)
                    if rc < 0:
                        raise field_error(where, f"libseccomp refused the rule for {name!r}: {os.strerror(-rc)}")
        return _export(lib, ctx)
    finally:
        lib.pc_scmp_release(ctx)


def _export(lib: Any, ctx: Any) -> bytes:
    fd = os.memfd_create("pycontain-seccomp", os.MFD_CLOEXEC)
    try:
        rc = lib.pc_scmp_export_bpf(ctx, fd)
        if rc < 0:
            raise field_error(FIELD, f"libseccomp could not export the filter: {os.strerror(-rc)}")
        size = os.fstat(fd).st_size
        bpf = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    if not bpf or len(bpf) % INSN_SIZE or len(bpf) != size:
        raise field_error(FIELD, f"libseccomp exported a malformed filter ({len(bpf)} bytes)")
    if len(bpf) // INSN_SIZE > MAX_INSNS:
        raise field_error(FIELD, f"the filter compiles to {len(bpf) // INSN_SIZE} instructions, over the kernel's "
                    f"limit of {MAX_INSNS}")
    return bpf


def install(bpf: bytes, flags: list[str] | None = None) -> None:
    """In the child, right before execve: load `bpf` (from compile()) with the spec's flags. Needs
    no_new_privs set first, or CAP_SYS_ADMIN still held. Every syscall from here to the container's
    program must be one the filter allows."""
    bits = 0
    for flag in flags or ():
        bits |= FLAGS[flag]  # compile() validated the names
    syscalls.seccomp_set_filter(bpf, bits)


# ---------------------------------------------------------------- the compile cache

# Bump when compile() would turn the same object into a different program (the cache key includes it).
COMPILER_VERSION = 2  # 2: the binary-tree layout
CACHE_SUFFIX = ".bpf"
BPF_RET = 0x06  # BPF_CLASS(code) of a return: a program must end with one (the kernel checks it too)


def compile_cached(seccomp: Any, cache_dir: str | None) -> bytes:
    """compile(seccomp), kept in `cache_dir` for the next container with the same filter.

    Why: libseccomp takes ~10 ms to compile the default profile (1,040 BPF instructions for the three
    x86 ABIs), ten times the 1 ms a filter may add to a start (issue 12); the same profile and
    capability set give the same object (profile.resolve is deterministic), so a start pays a file
    read instead. Measured on the reference VM (6.18 kernel, libseccomp 2.5.4, Python 3.11; load
    average ~5 from other work), the default profile resolved for the default capabilities:
        compile()                    median 9.8 ms, min 8.0 ms (100 runs)
        compile_cached(), hit        median 0.052 ms (5,000 runs: key, directory checks, read)
        compile_cached(), miss       median 12.6 ms (compile, then write, fsync and rename)
    In a fresh interpreter (first calls, nothing warm), importing profile.py and this module,
    resolve(default(), caps) and a hit take 0.8 ms together (median of 21 processes).

    The key is the SHA-256 of the object as canonical JSON (keys sorted), of this module's
    COMPILER_VERSION and of the identity of the libseccomp file the loader would pick (path, inode,
    size, mtime: an upgrade, Debian's patch releases included, may change the names it knows). The file
    is `<cache_dir>/<key>.bpf`, the program exactly as install() takes it, written to a temporary file,
    flushed and renamed into place, so a reader sees all of it or none. A file that is empty, not a
    whole number of instructions, too long or not ending in a return is compiled again and replaced.

    The directory is made with mode 0700; one not owned by the user pycontain runs as (root), or
    writable by its group or others, is refused (PycontainError): whoever can write there chooses
    the filter of every container. A cache that cannot be written (a read-only or full disk) only
    costs the compile. With cache_dir None this is compile(). An object that does not compile is
    never stored, so a hit is always a program compile() accepted for exactly this object.
    """
    if cache_dir is None:
        return compile(seccomp)
    known = _KNOWN.get(id(seccomp))
    try:
        key = known[1] if known is not None and known[0] is seccomp else cache_key(seccomp)
    except (TypeError, ValueError):  # not JSON data: compile() says what is wrong with it
        return compile(seccomp)
    dir_fd = _cache_dir(cache_dir)
    if dir_fd is None:
        return compile(seccomp)
    try:
        name = key + CACHE_SUFFIX
        bpf = _cached(dir_fd, name)
        if bpf is None:
            bpf = compile(seccomp)
            _store(dir_fd, name, bpf)
        return bpf
    finally:
        os.close(dir_fd)


# Objects memo() returned, with their compile cache key (kept with them): compile_cached of the very
# same object skips hashing it (0.1 ms of the start). Keyed by id(); the object itself is kept too, so
# the id cannot be reused while the entry exists.
_KNOWN: dict[int, tuple[Any, str]] = {}


def memo(cache_dir: str, key: str, build: Any) -> dict[str, Any]:
    """build() (a linux.seccomp object), kept in `cache_dir` as `<key>.spec` (marshal) for the next call
    with the same key, with its compile cache key and the libseccomp it was made for: the front end
    keeps the default profile's resolution here (oci.seccomp_spec). The same directory rules as
    compile_cached (root's, 0700); a file that is not whole, or of another libseccomp, is built again."""
    import marshal

    dir_fd = _cache_dir(cache_dir)
    if dir_fd is None:
        value: dict[str, Any] = build()
        return value
    try:
        name = key.replace("/", "_") + ".spec"
        library = _library_identity()
        data = _read_own(dir_fd, name, 1 << 20)
        kept = None
        if data is not None:
            try:
                kept = marshal.loads(data)
            except (EOFError, ValueError, TypeError):
                pass
        if not (isinstance(kept, dict) and kept.get("library") == library and isinstance(kept.get("spec"), dict)
                and isinstance(kept.get("key"), str)):
            value = build()
            kept = {"spec": value, "key": cache_key(value), "library": library}
            _store(dir_fd, name, marshal.dumps(kept))
        _KNOWN[id(kept["spec"])] = (kept["spec"], kept["key"])
        spec: dict[str, Any] = kept["spec"]
        return spec
    finally:
        os.close(dir_fd)


def _read_own(dir_fd: int, name: str, limit: int) -> bytes | None:
    """The content of `name` in the cache, if it is a regular file of ours, not group/other-writable,
    of at most `limit` bytes; else None."""
    import stat

    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022 or st.st_size > limit:
            return None
        data = os.pread(fd, st.st_size + 1, 0)
        return data if len(data) == st.st_size else None
    except OSError:
        return None
    finally:
        os.close(fd)


def cache_key(seccomp: Any) -> str:
    """The cache key of a linux.seccomp object (hex SHA-256; see compile_cached)."""
    from pycontain import jsonfast

    # The built-in module: importing hashlib (OpenSSL's) costs ~2 ms of the start, and importlib
    # (to name the module as a string) 0.25 ms.
    try:
        from _sha256 import sha256  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # pragma: no cover - _sha2 from Python 3.12 on
        from hashlib import sha256
    text = f"{COMPILER_VERSION}\n{_library_identity()}\n{jsonfast.dumps(seccomp)}"
    return str(sha256(text.encode()).hexdigest())


def _library_identity() -> str:
    """The libseccomp.so.2 the loader would pick (as syscalls.libseccomp dlopens it), without loading it:
    its path and the device, inode, size and mtime of the file it leads to (an upgrade replaces the file),
    or "none" where it is missing."""
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    multiarch = getattr(sys.implementation, "_multiarch", "")
    for base in ("/lib", "/usr/lib", "/lib64", "/usr/lib64"):
        dirs += [f"{base}/{multiarch}", base] if multiarch else [base]
    for d in dirs:
        path = f"{d}/libseccomp.so.2"
        try:
            st = os.stat(path)
        except OSError:
            continue
        return f"{path}:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    return "none"


def _cache_dir(path: str) -> int | None:
    """A descriptor of the cache directory, made if missing; None if it cannot be made or opened (the
    cache is skipped); PycontainError if it is not safe to use."""
    from pycontain.errors import PycontainError

    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:  # the first container with a filter: make it
            os.makedirs(path, mode=0o700, exist_ok=True)
            fd = os.open(path, flags)
    except OSError as e:
        if e.errno in (errno.ENOTDIR, errno.ELOOP, errno.EEXIST):  # a file or a symlink where the directory goes
            raise PycontainError(f"seccomp cache {path}: not a directory (or a symbolic link): "
                                 "refusing to use it") from None
        return None
    st = os.fstat(fd)
    why = ""
    if st.st_uid != os.geteuid():
        why = f"owned by uid {st.st_uid}, not by uid {os.geteuid()} that pycontain runs as"
    elif st.st_mode & 0o022:
        why = f"writable by {'others' if st.st_mode & 0o002 else 'its group'} (mode {st.st_mode & 0o7777:04o})"
    if why:
        os.close(fd)
        raise PycontainError(f"seccomp cache {path}: {why}: refusing to use it (whoever can write there "
                             "chooses the containers' syscall filter)")
    return fd


def _cached(dir_fd: int, name: str) -> bytes | None:
    """The program stored under `name`, or None if there is none or it is not a whole program."""
    bpf = _read_own(dir_fd, name, MAX_INSNS * INSN_SIZE)
    # Whole instructions, and the last one a return (struct sock_filter: u16 code first, native order).
    if not bpf or len(bpf) % INSN_SIZE or \
            int.from_bytes(bpf[-INSN_SIZE:-INSN_SIZE + 2], sys.byteorder) & 0x07 != BPF_RET:
        return None
    return bpf


def _store(dir_fd: int, name: str, bpf: bytes) -> None:
    """Write `bpf` under `name`: a temporary file, flushed, renamed over. Failures only lose the cache."""
    tmp = f".{name}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except OSError:
        return
    try:
        try:
            view = memoryview(bpf)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)  # before the rename: after a crash the name holds all of the program or nothing
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
