"""The three files that tell a container who and where it is: /etc/hostname, /etc/hosts, /etc/resolv.conf.

They are written per container on the host and bind-mounted over the image's copies, as Docker does,
so the image stays untouched and the container can still edit its own copy.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def write_files(directory: str, hostname: str, host_resolv: str = "/etc/resolv.conf", cfg: Any = None,
                gateway: str = "") -> dict[str, str]:
    """Write hostname, hosts and resolv.conf into `directory`; returns container path -> host file.
    cfg: the container's --dns/--dns-search/--dns-option/--add-host (gateway: what host-gateway means)."""
    files = {
        "/etc/hostname": f"{hostname}\n",
        "/etc/hosts": (
            "127.0.0.1\tlocalhost\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"127.0.1.1\t{hostname}\n"
        ),
        "/etc/resolv.conf": resolv_conf(host_resolv),
    }
    if cfg is not None and (cfg.dns or cfg.dns_search or cfg.dns_options or cfg.add_hosts):
        files["/etc/resolv.conf"] = custom_resolv(files["/etc/resolv.conf"], cfg)
        files["/etc/hosts"] += extra_hosts(cfg.add_hosts, gateway)
    out = {}
    for target, text in files.items():
        path = f"{directory}/{os.path.basename(target)}"
        try:
            with open(path, "w") as f:
                f.write(text)
        except OSError as e:
            # A failed write (a full disk) names no file; the one line pycontain prints should.
            raise OSError(e.errno, e.strerror, path) from None
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


# When the host's resolv.conf names only a loopback stub (systemd-resolved's 127.0.0.53, dnsmasq's
# 127.0.0.1) the stub is unreachable from a container's network namespace. systemd-resolved writes the
# servers it forwards to in this file; without it, bridge containers get Docker's fallback servers.
UPSTREAM_FILES = ("/run/systemd/resolve/resolv.conf",)
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")


def bridge_resolv_conf(host_resolv: str = "/etc/resolv.conf") -> str:
    """resolv.conf for a container on a bridge: the host's, with a loopback stub replaced by what it
    forwards to (if discoverable), else by FALLBACK_NAMESERVERS."""
    text = resolv_conf(host_resolv)
    if _nameservers(text):
        return text
    for upstream in UPSTREAM_FILES:
        forwarded = resolv_conf(upstream)
        if _nameservers(forwarded):
            return forwarded
    return text + "".join(f"nameserver {ns}\n" for ns in FALLBACK_NAMESERVERS)


def embedded_resolv_conf(host_resolv: str = "/etc/resolv.conf") -> str:
    """resolv.conf for a container on a user network, as Docker writes it: the network's resolver
    (resolver.py, which forwards what it does not know to the host's servers), the host's search
    domains and options, and ndots:0 unless the host sets ndots (a name with no dot is tried as it is
    first: a container or service name)."""
    from pycontain.network.resolver import ADDRESS

    try:
        with open(host_resolv) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    out = [f"nameserver {ADDRESS}"]
    search = ""
    options: list[str] = []
    for ln in lines:
        words = ln.split()
        if words[:1] in (["search"], ["domain"]) and len(words) > 1:
            search = "search " + " ".join(words[1:])  # the last of them counts (resolv.conf(5))
        elif words[:1] == ["options"]:
            options += words[1:]
    if search:
        out.append(search)
    if not any(o.startswith("ndots:") for o in options):
        options.insert(0, "ndots:0")
    out.append("options " + " ".join(dict.fromkeys(options)))
    return "\n".join(out) + "\n"


def custom_resolv(text: str, cfg: Any) -> str:
    """resolv.conf with --dns (the name servers), --dns-search (the search line; "." none) and
    --dns-option (the options line) replacing the host's, as Docker writes it."""
    if not (cfg.dns or cfg.dns_search or cfg.dns_options):
        return text
    replaced = {"nameserver": bool(cfg.dns), "search": bool(cfg.dns_search), "domain": bool(cfg.dns_search),
                "options": bool(cfg.dns_options)}
    lines = [ln for ln in text.splitlines() if not replaced.get((ln.split() or [""])[0], False)]
    domains = [d for d in cfg.dns_search if d != "."]
    if domains:
        lines.append("search " + " ".join(domains))
    lines += [f"nameserver {ns}" for ns in cfg.dns]
    if cfg.dns_options:
        lines.append("options " + " ".join(cfg.dns_options))
    return "\n".join(lines) + "\n" if lines else ""


def extra_hosts(add_hosts: tuple[str, ...] | list[str], gateway: str) -> str:
    """The --add-host lines of /etc/hosts ("HOST:IP"; host-gateway is the host's address on the bridge)."""
    out = []
    for item in add_hosts:
        host, _, address = item.partition(":")
        out.append(f"{gateway if address == 'host-gateway' else address}\t{host}\n")
    return "".join(out)


def _nameservers(text: str) -> list[str]:
    return [ln.split()[1] for ln in text.splitlines() if ln.split()[:1] == ["nameserver"] and len(ln.split()) > 1]


def hosts_text(entries: list[tuple[str, list[str]]]) -> str:
    """/etc/hosts for a bridge container: localhost, then one line per (address, names)."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{addr}\t{' '.join(dict.fromkeys(n for n in names if n))}" for addr, names in entries]
    return "\n".join(lines) + "\n"


def rewrite_in_place(path: str, text: str) -> None:
    """Replace a file's content keeping its inode: it is bind-mounted into running containers, and a
    rename would leave them looking at the old file. Callers serialise writers with a lock."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        data = text.encode()
        os.write(fd, data)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _is_loopback(addr: list[str]) -> bool:
    return bool(addr) and (addr[0].startswith("127.") or addr[0] == "::1")
