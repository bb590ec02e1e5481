"""The three files that tell a container who and where it is: /etc/hostname, /etc/hosts, /etc/resolv.conf.

They are written per container on the host and bind-mounted over the image's copies, as Docker does,
so the image stays untouched and the container can still edit its own copy.
"""

from __future__ import annotations

import os


def write_files(directory: str, hostname: str, host_resolv: str = "/etc/resolv.conf") -> dict[str, str]:
    """Write hostname, hosts and resolv.conf into `directory`; returns container path -> host file."""
    files = {
        "/etc/hostname": f"{hostname}\n",
        "/etc/hosts": (
            "127.0.0.1\tlocalhost\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"127.0.1.1\t{hostname}\n"
        ),
        "/etc/resolv.conf": resolv_conf(host_resolv),
    }
    out = {}
    for target, text in files.items():
        path = f"{directory}/{os.path.basename(target)}"
        with open(path, "w") as f:
            f.write(text)
        out[target] = path
    return out


def resolv_conf(host_resolv: str) -> str:
    """The host's resolver config minus loopback nameservers, which mean nothing in another netns."""
    try:
        with open(host_resolv) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    kept = [ln for ln in lines if not (ln.split()[:1] == ["nameserver"] and _is_loopback(ln.split()[1:2]))]
    return "\n".join(kept) + "\n" if kept else ""


def _is_loopback(addr: list[str]) -> bool:
    return bool(addr) and (addr[0].startswith("127.") or addr[0] == "::1")
