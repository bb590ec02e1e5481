"""Who the container's process is and what it may do: user, groups, capabilities, no_new_privs.

Runs in the child after pivot_root, so /etc/passwd and /etc/group are the image's, never the host's.
"""

from __future__ import annotations

import os

from pycontain import explain, syscalls
from pycontain.errors import PycontainError
from pycontain.oci import DEFAULT_CAPS as SPEC_DEFAULT_CAPS

# podman's default capability set (the spec's names, without CAP_); every other capability is dropped
# from the bounding, permitted, effective and inheritable sets, and the ambient set is emptied.
DEFAULT_CAPS = tuple(name[4:] for name in SPEC_DEFAULT_CAPS)
class User:
    __slots__ = ("uid", "gid", "groups", "home")

    def __init__(self, uid: int, gid: int, groups: list[int], home: str) -> None:
        self.uid, self.gid, self.groups, self.home = uid, gid, groups, home


def open_inside(path: str, flags: int) -> int:
    """Open `path` in the container, from the child once it is inside (after pivot_root or setns):
    resolved with this process's root as "/", ordinary links followed inside it, /proc magic links
    refused (through /proc/self/fd/N or /proc/PID/cwd they could name something pycontain still
    holds from the host). Rooted at a descriptor of "/" itself, not at the working directory."""
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return syscalls.openat2(root, path, flags, syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS,
                                what=path)
    finally:
        os.close(root)


def _read_db(path: str) -> list[list[str]]:
    """The lines of the image's /etc/passwd or /etc/group, split at ':'; [] if the image has none.

    The file is the image's, so it is untrusted, and we read it as root in the child, whose parent is
    waiting: a FIFO there would block the read forever (hanging `run`/`exec -u`), /dev/zero or a
    many-GiB file would fill memory, and a symlink could lead to /proc/self/fd/N, one of our own host
    descriptors that are still open at this point. So: O_NONBLOCK (opening a FIFO does not wait for a
    writer), openat2 with RESOLVE_NO_MAGICLINKS (an ordinary link inside the image is fine: after
    pivot_root it cannot lead out), then fstat the descriptor itself and accept only a regular file of
    at most 4 MiB. Plain os calls and literal mode bits: the child imports nothing after clone.
    """
    cap = 4 << 20
    try:
        fd = open_inside(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return []  # an image without users (scratch): numeric -u still works
    except OSError as e:
        raise PycontainError(f"cannot read the image's {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o170000 != 0o100000:  # not S_ISREG: a FIFO, a device, a directory, a socket
            raise PycontainError(f"the image's {path} is not a regular file")
        if st.st_size > cap:
            raise PycontainError(f"the image's {path} is larger than {cap >> 20} MiB; refusing to read it")
        chunks: list[bytes] = []
        size = 0
        while size <= cap:  # st_size is only a hint: the file may be growing
            chunk = os.read(fd, cap + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > cap:
            raise PycontainError(f"the image's {path} is larger than {cap >> 20} MiB; refusing to read it")
    except OSError as e:
        raise PycontainError(f"cannot read the image's {path}: {e.strerror}") from None
    finally:
        os.close(fd)
    text = b"".join(chunks).decode("utf-8", "replace")
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(spec: str) -> User:
    """`-u user[:group]` by name or number, looked up in the container's own /etc/passwd and /etc/group."""
    user, _, group = (spec or "").partition(":")
    try:
        passwd = _read_db("/etc/passwd")
    except PycontainError:
        if spec:
            raise
        passwd = []  # no -u: root whatever the image's /etc/passwd is; it only supplies $HOME
    entry = None
    if user == "":
        uid = 0
        entry = next((e for e in passwd if len(e) >= 7 and e[2] == "0"), None)
    elif user.isdigit():
        uid = int(user)
        entry = next((e for e in passwd if len(e) >= 7 and e[2] == user), None)
    else:
        entry = next((e for e in passwd if len(e) >= 7 and e[0] == user), None)
        if entry is None:
            raise PycontainError(f"unable to find user {user}: no matching entries in the image's /etc/passwd")
        uid = int(entry[2])
    gid = int(entry[3]) if entry and entry[3].isdigit() else 0
    home = entry[5] if entry else "/"
    try:
        groups_db = _read_db("/etc/group")
    except PycontainError:
        if spec:
            raise
        groups_db = []
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            match = next((g for g in groups_db if len(g) >= 3 and g[0] == group), None)
            if match is None:
                raise PycontainError(f"unable to find group {group}: no matching entries in the image's /etc/group")
            gid = int(match[2])
    name = entry[0] if entry else None
    extra = [int(g[2]) for g in groups_db
             if len(g) >= 4 and name and name in g[3].split(",") and g[2].isdigit()] if not group else []
    return User(uid, gid, sorted({gid, *extra}), home)


def set_identity(user: User, caps: tuple[int, int, int, int, int], no_new_privs: bool = True) -> None:
    """Become `user` with the capability sets (bounding, effective, permitted, inheritable, ambient),
    as bit masks; no_new_privs so that no execve can raise them again (setuid binaries, file caps)."""
    bounding, effective, permitted, inheritable, ambient = caps
    if no_new_privs:
        syscalls.set_no_new_privs()
    # The bounding set limits what any later execve can ever gain; it needs CAP_SETPCAP, so it goes first.
    syscalls.capbset_keep(bounding)
    keep = user.uid != 0 and bool(permitted)
    if keep:  # the spec gives a non-root user capabilities: setuid must not clear the permitted set
        syscalls.set_keepcaps(True)
    os.setgroups(user.groups)
    os.setgid(user.gid)
    os.setuid(user.uid)  # to a non-zero uid this clears the permitted and effective sets (unless keepcaps)
    if keep:
        syscalls.set_keepcaps(False)
    # Inheritable stays empty unless the spec asks (CVE-2022-24769), and so does ambient.
    syscalls.capset(effective, permitted, inheritable)
    syscalls.cap_ambient_clear_all()
    # The kernel raises an ambient capability only if it is both permitted and inheritable; like runc,
    # a spec asking for others (runc's own default spec lists ambient but no inheritable) gets those it can.
    ambient &= permitted & inheritable
    for bit in range(64):
        if ambient >> bit & 1:
            syscalls.cap_ambient_raise(bit)
    explain.say(f"setgroups/setgid/setuid({user.uid}:{user.gid}) + capset: {bin(bounding).count('1')} capabilities "
                f"in the bounding set, {bin(effective).count('1')} effective"
                + (", PR_SET_NO_NEW_PRIVS" if no_new_privs else ""))
