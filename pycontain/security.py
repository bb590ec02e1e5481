"""Who the container's process is and what it may do: user, groups, capabilities, no_new_privs.

Runs in the child after pivot_root, so /etc/passwd and /etc/group are the image's, never the host's.
"""

from __future__ import annotations

import os

import prctl  # python-prctl: imported here, before clone, so the child imports nothing

from pycontain import explain, syscalls
from pycontain.errors import PycontainError

# podman's default capability set; every other capability is dropped from the bounding, permitted,
# effective and inheritable sets, and the ambient set is emptied.
DEFAULT_CAPS = (
    "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP", "SETGID",
    "SETPCAP", "SETUID", "SYS_CHROOT",
)


class User:
    __slots__ = ("uid", "gid", "groups", "home")

    def __init__(self, uid: int, gid: int, groups: list[int], home: str) -> None:
        self.uid, self.gid, self.groups, self.home = uid, gid, groups, home


def _read_db(path: str) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.split(":") for line in f.read().splitlines() if line and not line.startswith("#")]
    except OSError:
        return []


def resolve_user(spec: str) -> User:
    """`-u user[:group]` by name or number, looked up in the container's own /etc/passwd and /etc/group."""
    user, _, group = (spec or "").partition(":")
    passwd = _read_db("/etc/passwd")
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
    groups_db = _read_db("/etc/group")
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


def drop_privileges(user: User, caps: tuple[str, ...] = DEFAULT_CAPS) -> None:
    """Capabilities down to `caps`, then become `user`; no_new_privs so nothing can raise them again."""
    keep = [getattr(prctl, f"CAP_{c}") for c in caps]
    # no_new_privs: execve can never grant privileges again (setuid binaries, file capabilities).
    prctl.set_no_new_privs(1)
    # The bounding set limits what any later execve can ever gain; it needs CAP_SETPCAP, so it goes first.
    prctl.capbset.limit(*keep)
    os.setgroups(user.groups)
    os.setgid(user.gid)
    os.setuid(user.uid)  # to a non-zero uid this clears the permitted and effective sets (no keepcaps)
    if user.uid == 0:
        prctl.cap_effective.limit(*keep)  # effective must stay a subset of permitted: lower it first
        prctl.cap_permitted.limit(*keep)
    # Inheritable stays empty (CVE-2022-24769), and so does ambient.
    prctl.cap_inheritable.limit()
    syscalls.cap_ambient_clear_all()
    explain.say(f"setgroups/setgid/setuid({user.uid}:{user.gid}) + capset: {len(caps)} capabilities "
                f"({'kept' if user.uid == 0 else 'bounding only; none effective for a non-root user'}), "
                "PR_SET_NO_NEW_PRIVS")
