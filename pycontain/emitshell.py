"""`run --emit-shell`: the container `run` would make, written out as a bash script of standard tools.

The lesson "a container is just these calls": the script is derived from the same runtime spec that
`run` hands its executor (oci.container_spec), and each block carries the words `--explain` prints for
that step, in the same order. Running it as root builds the same isolation with util-linux (unshare,
mount, umount, pivot_root, setpriv), coreutils, iproute2 and nftables, and removes what it made on exit.

What standard tools cannot do is said in the script rather than pretended: no seccomp filter (no tool
loads one), no session keyring, no cgroup v2 device filter (both need syscalls no standard tool makes).

Two things are not kernel calls, and the script keeps them where they belong:
  - the image: the overlay's lower directories are the layers in pycontain's store, read where they
    are (read-only), never copied;
  - a bridge network's address and host ports: pycontain's IPAM hands them out (under its locks), so a
    script can never take an address or a port a pycontain container holds. The script asks for them at
    run time through `python -m pycontain.emitshell lease` (helper() below) under an id of its own,
    pins them with a lock on that id's record lock file (what pycontain's `gc` checks before reclaiming
    a lease), and releases them on exit; after a `kill -9`, `pycontain gc` reclaims them once the
    container is gone. The network's bridge and its nft chains are pycontain's: the lease makes them
    as `run` does when they are missing; the script adds only its veth and a DNAT table of its own.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from typing import Any

from pycontain.errors import PycontainError, UsageError
from pycontain.mounts import DEV_LINKS, DEVICES, WHY_MOUNT  # the nodes, links and words `run` has

# Values only known when the script runs (its own id, its work directory, the gateway it leased) are
# written as these markers while the spec is built, and become "$VAR" expansions in the script.
MARK = {"@@WORK@@": "WORK", "@@SHORT@@": "SHORT", "@@ID@@": "ID", "@@GATEWAY@@": "GATEWAY"}
_MARK_RE = re.compile("(" + "|".join(MARK) + ")")

# The cgroup v1 hierarchies pycontain puts a container in (cgroups/v1.py CONTROLLERS without cpuset,
# which joins only for --cpuset-cpus, which the script refuses; plus devices, for the device rules).
V1_CONTROLLERS = ("pids", "memory", "cpu", "cpuacct", "blkio", "devices")
# Names bash will not export (read-only shell variables) or that the last step uses itself.
BASH_READONLY = frozenset(("BASHOPTS", "BASH_VERSINFO", "EUID", "PPID", "SHELLOPTS", "UID", "_"))
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
DEFAULT_NETWORKS = ("bridge", "pycontain")

# The script's comments use the words `--explain` says for each step (runtime.py, mounts.py, executor.py,
# security.py ...), taken from those modules where they are data (mounts.WHY_MOUNT);
# tests/integration/test_emit_shell.py compares them with a real `--explain` run.

# ---------------------------------------------------------------- the command

def cmd_emit(paths: Any, cfg: Any) -> int:
    """Print the script for `run [flags] IMAGE CMD`; nothing is created (one line, exit 125, if the
    flags ask for something the script cannot reproduce, or the image is not stored)."""
    refuse_unsupported(cfg)
    from pycontain.images.store import Store

    # Never a pull: the script reads the layers where the store keeps them, so they must be here now.
    image = Store(paths).resolve(cfg.image)
    sys.stdout.write(render(paths, cfg, image))
    return 0


def refuse_unsupported(cfg: Any) -> None:
    """Flags whose effect the script would silently lose: refused by name, before anything is read."""
    from pycontain.config import mode

    lim, sec = cfg.limits, cfg.security
    problems = [
        (cfg.detach, "-d/--detach: the script runs the container in the foreground (run it with `&` or nohup)"),
        (cfg.restart, "--restart: restarting is the detached monitor's job, which a script does not have"),
        (cfg.healthcheck and cfg.healthcheck.get("Test") != ["NONE"],
         "--health-*: health checks are run by pycontain's monitor"),
        (cfg.runtime, "--runtime: the script is the runtime"),
        (mode(sec.userns) == "auto", "--userns=auto: the uid range is pycontain's lease and the layers are "
                                     "idmapped with mount_setattr(2), which no standard tool does (add --userns=host)"),
        (sec.privileged, "--privileged: every host device node and capability"),
        (sec.devices, "--device"),
        (sec.ulimits, "--ulimit"),
        (cfg.pid, "--pid"),
        (cfg.ipc and cfg.ipc != "private", "--ipc"),
        (cfg.uts, "--uts"),
        (cfg.network.startswith("container:"), "--network container:NAME"),
        (cfg.network not in ("none", "host", *DEFAULT_NETWORKS) and not cfg.network.startswith("container:"),
         f"--network {cfg.network}: a user network's names are served by pycontain's DNS resolver "
         "(only the default bridge network, none and host are reproduced)"),
        (cfg.network_aliases, "--network-alias"),
        (cfg.volumes_from, "--volumes-from"),
        (any(m.kind == "volume" for m in cfg.mounts), "-v/--mount with a volume: volumes are pycontain's "
                                                     "bookkeeping (bind mounts and tmpfs are reproduced)"),
        (cfg.cidfile, "--cidfile"),
        (cfg.log_driver is not None or cfg.log_max_size != 10 * 1024 * 1024 or cfg.log_max_files != 3,
         "--log-driver/--log-opt: the script writes no log, the output is its own"),
        (lim.cpuset_cpus is not None, "--cpuset-cpus"),
        (lim.cpuset_mems is not None, "--cpuset-mems"),
        (lim.blkio_weight is not None, "--blkio-weight"),
        (lim.memory_swappiness is not None, "--memory-swappiness"),
        (lim.oom_kill_disable is not None, "--oom-kill-disable"),
        (lim.net_classid is not None or lim.net_priorities, "net_cls/net_prio limits"),
    ]
    for bad, what in problems:
        if bad:
            raise UsageError(f"--emit-shell cannot reproduce {what}")
    for entry in cfg.env:
        _env_name(entry.partition("=")[0])


def _env_name(name: str) -> None:
    if not _IDENT.match(name) or name in BASH_READONLY:
        raise UsageError(f"--emit-shell cannot pass the environment variable {name!r}: the script's last "
                         "step exports it with bash, which takes only shell identifiers (and not its own "
                         "read-only ones)")


# ---------------------------------------------------------------- shell words

def word(text: str) -> str:
    """`text` as one shell word; the run-time markers become "$VAR" expansions."""
    parts = [p for p in _MARK_RE.split(text) if p]
    if not parts:
        return "''"
    return "".join(f'"${MARK[p]}"' if p in MARK else shlex.quote(p) for p in parts)


def words(items: list[str] | tuple[str, ...]) -> str:
    return " ".join(word(i) for i in items)


def array(name: str, items: list[str] | tuple[str, ...]) -> str:
    return f"{name}=({words(items)})"


def comment(text: str, width: int = 110) -> list[str]:
    """A step's narration as comment lines (wrapped, so the script stays readable)."""
    out, line = [], "#"
    for w in text.split():
        if len(line) + 1 + len(w) > width and line != "#":
            out.append(line)
            line = "#  "
        line += " " + w
    out.append(line)
    return out


def step(text: str) -> list[str]:
    """A block's header: a blank line and the --explain words (a run-time value named by its variable)."""
    for mark, var in MARK.items():
        text = text.replace(mark, f"${var}")
    return ["", *comment(f"[explain] {text}")]


# ---------------------------------------------------------------- reading the image (its /etc/passwd)

def image_file(layers: list[str] | tuple[str, ...], rel: str) -> str:
    """A small text file of the image as the overlay shows it, as `run` reads it (oci.image_file): a
    file that is not a regular one of at most 4 MiB counts as absent here."""
    from pycontain import oci

    return oci.image_file(layers, rel, strict=False)


def home_of(layers: list[str] | tuple[str, ...], user: str, uid: int) -> str:
    """$HOME as pycontain sets it (security.resolve_user): the passwd entry of the user, else /."""
    name = user.partition(":")[0]
    for line in image_file(layers, "etc/passwd").splitlines():
        e = line.split(":")
        if len(e) >= 7 and not line.startswith("#") and (
                e[0] == name if name and not name.isdigit() else e[2] == str(uid)):
            return e[5]
    return "/"


# ---------------------------------------------------------------- the spec, and the script from it

class Plan:
    """What the script needs, computed from the image, the flags and the runtime spec."""

    def __init__(self, paths: Any, cfg: Any, image: Any) -> None:
        from pycontain import oci as ocispec
        from pycontain.config import PortMapping

        self.cfg, self.image = cfg, image
        self.layers = list(image.layers)
        img = image.config.get("config") or {}
        if img.get("Volumes"):
            raise UsageError("--emit-shell cannot reproduce the image's VOLUME " + ", ".join(sorted(img["Volumes"]))
                             + ": anonymous volumes are pycontain's bookkeeping")
        self.network = "bridge" if cfg.network in DEFAULT_NETWORKS else cfg.network
        ports = list(cfg.ports)
        if cfg.publish_all:  # -P: as create does, every exposed port not given with -p, on a free host port
            given = {(p.container_port, p.protocol) for p in ports}
            for key in dict.fromkeys([*(img.get("ExposedPorts") or {}), *cfg.expose]):
                num, _, proto = key.partition("/")
                if num.isdigit() and proto in ("", "tcp", "udp") and (int(num), proto or "tcp") not in given:
                    ports.append(PortMapping(container_port=int(num), protocol=proto or "tcp"))
        if ports and self.network != "bridge":
            raise UsageError(f"-p needs a bridge network; --network {cfg.network} has none")
        self.ports = ports
        # The hostname: --hostname, the host's with --network host, else the script's own short id.
        self.res = cfg.with_image_defaults(image.config, "@@SHORT@@")
        for entry in self.res.env:
            _env_name(entry.partition("=")[0])
        self.uid, self.gid, self.groups = ocispec.image_ids(self.layers, self.res.user, cfg.group_add)
        self.home = home_of(self.layers, self.res.user, self.uid)
        self.name = cfg.name or "pycontain-sh-@@SHORT@@"
        etc = {t: f"@@WORK@@/etc/{os.path.basename(t)}" for t in ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")}
        self.spec = ocispec.container_spec("@@ID@@", cfg, self.res, cfg.limits, "@@WORK@@", self.layers, etc)
        self.etc_text = self._etc_files(paths)
        self.paths = paths

    def _etc_files(self, paths: Any) -> dict[str, str]:
        """hostname, hosts and resolv.conf as `run` writes them (a bridge's hosts names the leased address)."""
        import tempfile

        from pycontain import network
        from pycontain.network import dns

        cfg, hostname = self.cfg, self.res.hostname
        if self.network == "bridge":
            text = {"hostname": f"{hostname}\n",
                    "hosts": dns.hosts_text([("@@ADDRESS@@", [hostname, self.name])])
                    + (dns.extra_hosts(cfg.add_hosts, "@@GATEWAY@@") if cfg.add_hosts else ""),
                    "resolv.conf": dns.custom_resolv(dns.bridge_resolv_conf(), cfg)}
            return text
        gateway = network.host_gateway(paths) if any(h.endswith(":host-gateway") for h in cfg.add_hosts) else ""
        with tempfile.TemporaryDirectory(prefix="pycontain-emit-") as d:
            files = dns.write_files(d, hostname, cfg=cfg, gateway=gateway)
            out = {}
            for target, path in files.items():
                with open(path) as f:
                    out[os.path.basename(target)] = f.read()
        return out


def render(paths: Any, cfg: Any, image: Any) -> str:
    plan = Plan(paths, cfg, image)
    return "\n".join(Script(plan).lines()) + "\n"


class Script:
    """The bash text, block by block, in the order `run` takes the steps."""

    def __init__(self, plan: Plan) -> None:
        self.p = plan
        self.spec = plan.spec
        self.linux = self.spec["linux"]
        self.process = self.spec["process"]
        self.new_net = any(ns["type"] == "network" for ns in self.linux["namespaces"])
        self.bridge = plan.network == "bridge"

    # -------------------------------------------------------- pieces

    def lines(self) -> list[str]:
        out = self.header()
        out += self.settings()
        out += LIBRARY.splitlines()
        out += self.host_side()
        out += self.container_side()
        out += self.main()
        return out

    def tools(self) -> list[str]:
        out = ["unshare", "mount", "umount", "pivot_root", "setpriv", "findmnt", "flock", "ldd", "mknod", "readlink",
               "mktemp", "od", "seq", "xargs", "hostname", "env"]
        if self.new_net:
            out.append("ip")
        if self.bridge:
            out += ["nsenter", "mkfifo"] + (["nft"] if self.p.ports else [])
        return out

    def header(self) -> list[str]:
        p, cfg = self.p, self.p.cfg
        seccomp = self.linux.get("seccomp")
        if seccomp:
            count = sum(len(r["names"]) for r in seccomp["syscalls"])
            lost = (f"seccomp: the syscall filter `run` loads right before execve (profile {cfg.security.seccomp}: "
                    f"{len(seccomp['syscalls'])} rules over {count} syscalls, anything else fails with EPERM) is "
                    "NOT loaded here: no standard tool can install a seccomp BPF filter (setpriv, capsh and unshare "
                    "have no option for it; it takes seccomp(2) with a compiled program). The command may make "
                    "every syscall its capabilities allow.")
        else:
            lost = "seccomp: none, as asked (--security-opt seccomp=unconfined)."
        tools = ("bash, util-linux (unshare, mount, umount, pivot_root, setpriv, findmnt, flock), coreutils, the C "
                 "library's ldd and dynamic loader, hostname" + (", iproute2 (ip)" if self.new_net else "")
                 + (", nftables (nft)" if p.ports else ""))
        paragraphs = [
            f"The container `pycontain {_invocation(cfg)}` makes, rebuilt by hand with standard tools.",
            f"Written by `pycontain run --emit-shell` (pycontain {_version()}) from the same runtime spec `run` hands "
            "its executor. Each block carries the words `pycontain --explain run` prints for that step, in the same "
            "order. Run it as root (`bash container.sh`); it needs " + tools + ". It reads the image's layers where "
            f"pycontain's store keeps them ({p.paths.storage}) and copies nothing.",
            "It makes a private temporary directory (under $TMPDIR or /tmp), a cgroup"
            + (", a veth, an nft table and an address lease" if self.bridge else "") + " of its own, and removes "
            "them on exit, on an error, on Ctrl-C, TERM and HUP. Mounts need no undoing: they are made inside the "
            "container's own mount namespace and vanish with it. `kill -9` of this script cannot be caught: the "
            "container then runs until its command exits; remove its cgroup (pycontain-sh-ID) and the "
            "pycontain-sh.* directory by hand" + (", `nft delete table ip pycontain-sh-SHORTID`, and run "
                                                 "`pycontain gc` for the lease" if self.bridge else "") + ".",
        ]
        if self.bridge:
            paragraphs.append(
                "The address and host ports come from pycontain's IPAM (a Python call, the only one): an address is "
                "bookkeeping, not a kernel call, and only pycontain's locks guarantee no container of pycontain's "
                "holds it too. The lease is pinned by a lock on $PYCONTAIN_STATE/containers/ID/lock (what "
                "`pycontain gc` checks before it reclaims one) and released on exit.")
        lost_list = [
            lost,
            "the session keyring: `run` gives the container a new one (keyctl(KEYCTL_JOIN_SESSION_KEYRING)); keyctl "
            "is keyutils, not a standard tool, so the command shares the caller's.",
            "on cgroup v2, device access: v2 has no devices.allow file, only a BPF program attached to the cgroup "
            "(bpf(2)); there the container is held only to the nodes its /dev has and to CAP_MKNOD. On cgroup v1 "
            "the same rules are written to devices.deny and devices.allow.",
            "recursive read-only: mount(8) cannot make a mount and those below it read-only in one step (`run` "
            "uses mount_setattr(AT_RECURSIVE)); the paths made read-only here have nothing mounted below them in a "
            "fresh procfs, but a read-only -v bind keeps its submounts writable.",
            "pycontain-exec: `run` starts the command from a sealed memfd so that no host binary is ever its "
            "/proc/self/exe; here the last host program is bash, which the command replaces.",
        ]
        if cfg.tty:
            lost_list.append("-t: no new terminal; the command gets the one this script runs in (TERM is set as "
                             "`run` sets it).")
        if (p.image.config.get("config") or {}).get("Healthcheck"):
            lost_list.append("the image's HEALTHCHECK: health checks are run by pycontain's monitor.")
        lost_list.append("logs, names, `pycontain ps`: the container is this script's, pycontain does not know it; "
                         "its output is the script's own.")
        out = ["#!/bin/bash"]
        for text in paragraphs:
            out += comment(text)
            out.append("#")
        out.append("# What standard tools cannot reproduce, said rather than pretended:")
        for text in lost_list:
            out += [line.replace("#  ", "#    ", 1) if i else line.replace("# ", "#  - ", 1)
                    for i, line in enumerate(comment(text, 108))]
        return out

    def settings(self) -> list[str]:
        p, cfg, spec = self.p, self.p.cfg, self.spec
        proc = self.process
        env = list(proc["env"])
        if not any(e.startswith("HOME=") for e in env):
            env.append(f"HOME={p.home}")  # as the executor adds it (namespaces.py)
        caps = ",".join("+" + c[4:].lower() for c in proc["capabilities"]["bounding"])
        out = [
            "",
            "set -euo pipefail",
            "unset BASH_ENV ENV CDPATH  # nothing of the caller's shell setup runs in the steps below",
            "umask 022",
            "# The script's own id: its cgroup, veth and nft table are named after it, so two runs never meet.",
            "ID=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \\n')",
            "SHORT=${ID:0:12}",
            "",
            "# ---------------------------------------------------------------- what `run` was asked for",
            f"IMAGE={word(p.image.ref)}",
            "# The image's unpacked layers in pycontain's store, topmost first: the overlay's read-only lower dirs.",
            f"LOWERDIRS={word(_lower(spec['annotations']))}",
            array("LAYERS", p.layers),
            array("COMMAND", proc["args"]),
            f"WORKDIR={word(proc['cwd'])}",
            f"HOST_NAME={word(spec.get('hostname') or '')}",
            f"RUN_UID={p.uid}",
            f"RUN_GID={p.gid}",
            f"RUN_GROUPS={','.join(str(g) for g in p.groups)}",
            f"CAPS={caps or '-all'}  # the bounding set (and, for root, the effective and permitted sets)",
            f"NO_NEW_PRIVS={1 if proc.get('noNewPrivileges') else 0}",
            f"NEW_NETNS={1 if self.new_net else 0}",
            f"STDIN_OPEN={1 if cfg.interactive else 0}  # -i",
            array("TOOLS", self.tools()),
        ]
        if self.bridge:
            out += [
                f"NETWORK={word(p.network)}",
                f"CONTAINER_NAME={word(p.name)}",
                f"REQUESTED_IP={word(cfg.ip or '')}",
                f"MAC_ADDRESS={word(cfg.mac_address or '')}",
                "# -p: protocol, host port (0: a free one), container port, host address ('' for every local one)",
                array("PUBLISH", [f"{m.protocol} {m.host_port} {m.container_port} {m.host_ip or '-'}"
                                  for m in p.ports]),
                "# pycontain's state (for the address lease) and the Python that runs its IPAM",
                f"PYCONTAIN_STATE={word(p.paths.state)}",
                f"PYCONTAIN_STORAGE={word(p.paths.storage)}",
                f"PYCONTAIN_PYTHON={word(sys.executable)}",
                f"PYCONTAIN_PACKAGE={word(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))}",
            ]
        out += [
            "# Its files: /etc/hostname, /etc/hosts and /etc/resolv.conf, as `run` writes them.",
            "write_etc_files() {",
        ]
        for name, text in p.etc_text.items():
            body = text.replace("@@ADDRESS@@", "@@ADDR@@")
            out.append(f"  printf '%s' {_etc_word(body)} > \"$WORK/etc/{name}\"")
        out += [
            "}",
            "# The environment, exactly: the last step clears what bash adds and exports these.",
            "container_env() {",
            "  ENV=(" + " ".join(_etc_word(e) for e in env) + ")",
            "}",
        ]
        return out

    # -------------------------------------------------------- the host's side

    def host_side(self) -> list[str]:
        p, lim = self.p, self.p.cfg.limits
        res = self.linux["resources"]
        out = ["", "# ================================================================ the host's side", ""]
        out += ["make_container() {"]
        if self.bridge:
            out += _indent(step(
                "IPAM: $ADDR/$PREFIXLEN on network $NETWORK ($SUBNET) leased to $SHORT (pycontain's IPAM hands "
                "out the address and host ports, under its locks, so nothing of pycontain's can get them too; "
                "the lock on $PYCONTAIN_STATE/containers/$ID/lock keeps `pycontain gc` from reclaiming them "
                "while this container lives)"))
            out += _indent(LEASE.splitlines())
        out += _indent(step(
            f"record $WORK (name {p.name}); image $IMAGE with {len(p.layers)} layer(s): here a private "
            "temporary directory holds the container's upper and work dirs, its /etc files and the mount point"))
        out += _indent(RECORD.splitlines())
        mounts, namespaces = len(self.spec["mounts"]), len(self.linux["namespaces"])
        caps = len(self.process["capabilities"]["bounding"])
        out += _indent(step(
            f"runtime spec: {mounts} mounts, {namespaces} namespaces, {caps} capabilities, the image's command: "
            "the whole contract between the front end and the executor (pycontain-oci runs the same document "
            "from a config.json); this script is that document, carried out by hand"))
        seccomp = self.linux.get("seccomp")
        if seccomp:
            out += _indent(step(
                f"seccomp profile {p.cfg.security.seccomp}: {len(seccomp['syscalls'])} rules over "
                f"{sum(len(r['names']) for r in seccomp['syscalls'])} syscalls for this capability set, anything "
                "else fails with EPERM; compiled once by libseccomp and kept, loaded with seccomp(2) right before "
                "execve -- NOT REPRODUCED: no standard tool can load a seccomp filter (see the header)"))
        limits = f"pids.max={lim.pids}" + (f", memory {lim.memory}" if lim.memory else "") + (
            f", cpus {lim.cpus}" if lim.cpus else "")
        out += _indent(step(
            f"mkdir $CG_NAME (cgroup v$CG_VERSION, {limits}): the container's processes are accounted and "
            "limited as one group"))
        out += _indent(self.cgroup_lines(res))
        out += _indent(step("keyctl(KEYCTL_JOIN_SESSION_KEYRING): a new session keyring, none of the caller's keys "
                            "-- NOT REPRODUCED: keyctl is not a standard tool (see the header)"))
        flags = ["CLONE_NEWPID", "CLONE_NEWNS", "CLONE_NEWUTS", "CLONE_NEWIPC"] + (["CLONE_NEWNET"] if self.new_net
                                                                                     else [])
        out += _indent(step(
            f"clone({'|'.join(flags)}) -> pid $CONTAINER_PID on the host: unshare(1) makes the namespaces and "
            "forks the process that becomes PID 1 (--kill-child: it dies with unshare, and with it every process "
            "of its PID namespace); the cgroup namespace comes after it joined its cgroup"))
        out += _indent(CLONE.splitlines())
        if self.bridge:
            out += _indent(step(
                "netlink RTM_NEWLINK bridge $BRIDGE (up), RTM_NEWADDR $GATEWAY/$PREFIXLEN: the gateway of network "
                "$NETWORK; and nft: table ip pycontain, its chains: masquerade $SUBNET, isolate bridge $BRIDGE -- "
                "both pycontain's, shared by every container of the network: the lease above made them if they "
                "were missing, as `run` does, and they stay (`pycontain network rm` removes them)"))
            out += _indent(step(
                "netlink RTM_NEWLINK veth $VETH (on the bridge, hairpin) <-> eth0 created inside PID "
                "$CONTAINER_PID's network namespace"))
            out += _indent(VETH.splitlines())
            out += _indent(step("inside: eth0 $ADDR/$PREFIXLEN up, default route via $GATEWAY"))
            out += _indent(INSIDE.splitlines())
            if p.ports:
                out += _indent(step(
                    "sysctl net.ipv4.conf.$BRIDGE.route_localnet=1: packets from 127.0.0.1 may be routed to "
                    "$BRIDGE (published ports on localhost); and ip_forward=1. Both stay, as `run` leaves them"))
                out += _indent(SYSCTLS.splitlines())
                out += _indent(step(
                    "nft: DNAT $PUBLISHED in prerouting and output (comment: the container id) -- in a table of "
                    "this script's own, ip pycontain-sh-$SHORT, deleted on exit"))
                out += _indent(NFT.splitlines())
        ns = "new PID, mount, UTS, IPC" + ("" if not self.new_net else ", network")
        out += _indent(step(
            f"  {ns} namespaces: the command will be PID 1 and see only its own processes, mounts, hostname"
            + ("" if not self.new_net else " and network stack")))
        if self.bridge:
            out += _indent(["echo go >&\"$GO_FD\"  # the container's PID 1 waits for its network before it goes on"])
        out += ["}"]
        return out

    def cgroup_lines(self, res: dict[str, Any]) -> list[str]:
        """mkdir and limits, for v2 and v1 (chosen when the script runs)."""
        lim = self.p.cfg.limits
        v2, v1 = [], []
        v2 += ["enable_v2_controllers  # the controllers `run` uses, handed down from the root (they stay on)",
               'CG_DIRS+=("/sys/fs/cgroup/$CG_NAME")', 'mkdir "/sys/fs/cgroup/$CG_NAME"',
               'CG="/sys/fs/cgroup/$CG_NAME"']
        v1 += ["for hierarchy in $(v1_hierarchies); do  # pids, memory, cpu, cpuacct, blkio, devices",
               '  CG_DIRS+=("$hierarchy/$CG_NAME")', '  mkdir "$hierarchy/$CG_NAME"', "done"]
        pids = "max" if lim.pids is None else str(lim.pids)
        v2.append(f'echo {pids} > "$CG/pids.max"')
        v1.append(f'echo {pids} > "$(v1_dir pids)/pids.max"')
        if lim.memory is not None:
            swap = lim.memory_swap if lim.memory_swap is not None else 2 * lim.memory
            v2.append(f'echo {lim.memory} > "$CG/memory.max"')
            v2.append(f'write_if_present "$CG/memory.swap.max" {"max" if swap == -1 else max(0, swap - lim.memory)}'
                      "  # v2 limits swap alone; --memory-swap counts memory plus swap")
            v1.append(f'echo {lim.memory} > "$(v1_dir memory)/memory.limit_in_bytes"')
            v1.append(f'write_if_present "$(v1_dir memory)/memory.memsw.limit_in_bytes" {-1 if swap == -1 else swap}'
                      "  # memory + swap (only with swap accounting)")
        if lim.memory_reservation is not None:
            v2.append(f'echo {lim.memory_reservation} > "$CG/memory.low"')
            v1.append(f'echo {lim.memory_reservation} > "$(v1_dir memory)/memory.soft_limit_in_bytes"')
        period = lim.cpu_period or 100_000
        if lim.cpus is not None:
            quota = round(lim.cpus * period)
            v2.append(f'echo "{quota} {period}" > "$CG/cpu.max"')
            v1.append(f'echo {period} > "$(v1_dir cpu)/cpu.cfs_period_us"')
            v1.append(f'echo {quota} > "$(v1_dir cpu)/cpu.cfs_quota_us"')
        elif lim.cpu_period:
            v1.append(f'echo {period} > "$(v1_dir cpu)/cpu.cfs_period_us"')
        if lim.cpu_shares is not None:
            v2.append(f'echo {1 + ((lim.cpu_shares - 2) * 9999) // 262142} > "$CG/cpu.weight"'
                      "  # v1 shares 2..262144 onto v2 weight 1..10000")
            v1.append(f'echo {lim.cpu_shares} > "$(v1_dir cpu)/cpu.shares"')
        from pycontain.cgroups.base import DEFAULT_DEVICE_RULES

        rules = list(res.get("devices") or []) + DEFAULT_DEVICE_RULES
        v1.append("# linux.resources.devices, then the nodes every container needs: which device nodes it may "
                  "open or make")
        written: dict[str, bool] = {}
        last = None
        for rule in rules:  # as cgroups/v1.py writes them: a repeat with no other verdict between changes nothing
            kind = rule.get("type") or "a"
            entry = "a" if kind == "a" else f"{kind} {_num(rule.get('major'))}:{_num(rule.get('minor'))} " \
                                            f"{rule.get('access') or 'rwm'}"
            allow = bool(rule.get("allow"))
            if written.get(entry) is allow and last is allow:
                continue
            if allow is not last:
                written = {}
            written[entry], last = allow, allow
            v1.append(f"echo {shlex.quote(entry)} > \"$(v1_dir devices)/devices.{'allow' if allow else 'deny'}\"")
        from pycontain.cgroups.v2 import device_program

        program = device_program(list(res.get("devices") or []) + DEFAULT_DEVICE_RULES)
        if program is not None:  # the words `run` says on v2 (the program is the one it would load)
            v2 += comment(f"[explain] bpf(BPF_PROG_LOAD) of a {len(program) // 8}-instruction device filter, "
                          "BPF_PROG_ATTACH to /sys/fs/cgroup/$CG_NAME: cgroup v2 decides device access with a BPF "
                          "program -- NOT REPRODUCED: no standard tool loads one (see the header)")
        out = ["if [ -e /sys/fs/cgroup/cgroup.controllers ]; then  # cgroup v2: one unified tree",
               "  CG_VERSION=2"]
        out += ["  " + line for line in v2]
        out += ["else  # cgroup v1 (or hybrid): one hierarchy per controller", "  CG_VERSION=1"]
        out += ["  " + line for line in v1]
        out += ["fi"]
        return out

    # -------------------------------------------------------- the container's side

    def container_side(self) -> list[str]:
        out = ["", "# ================================================================ inside (the container's PID 1)",
               "# These functions run in the new namespaces, each in a fresh bash (see stage()).", ""]
        out += ["container_init() {  # PID 1, in the new PID, mount, UTS, IPC" + (", network" if self.new_net else "")
                + " namespaces"]
        out += _indent(INIT.splitlines())
        out += ["}", "", "container_setup() {  # PID 1, now in its cgroup namespace too"]
        body: list[str] = []
        if self.new_net:
            body += step("ioctl(SIOCSIFFLAGS, lo, IFF_UP): the new network namespace has only a loopback device")
            body += ["ip link set lo up"]
        body += step("mount(/, MS_REC|MS_SLAVE): mounts made from here on stay inside the container's mount namespace")
        body += ["mount --make-rslave /"]
        body += step(f"mount(overlay, lowerdir={len(self.p.layers)} image layer(s), upperdir=per-container): the "
                     "image stays read-only, writes go to this container's upperdir")
        body += ['mount -t overlay overlay -o "lowerdir=$LOWERDIRS,upperdir=$WORK/upper,workdir=$WORK/work" "$ROOT"']
        for m in self.spec["mounts"]:
            body += self.mount_lines(m)
        body += step("mknod null zero full random urandom tty in /dev: no other host device exists here")
        body += ['dev=$(in_root /dev dir)']
        for name, (major, minor) in DEVICES.items():
            body.append(f'mknod -m 666 "$dev/{name}" c {major} {minor}')
        for name, target in DEV_LINKS.items():
            body.append(f'ln -s {target} "$dev/{name}"')
        body += ['in_root "$WORKDIR" dir >/dev/null  # the working directory, made if the image lacks it (as `run`)']
        for key, value in (self.linux.get("sysctl") or {}).items():
            path = "proc/sys/" + key.replace(".", "/")
            body += step(f"write {value} > /{path}: a sysctl of the container's own namespace")
            body += [f"printf '%s' {shlex.quote(value)} > \"$ROOT/{path}\""]
        body += step("pivot_root(rootfs) + umount2(old root, MNT_DETACH): the host's filesystem is gone from view")
        body += PIVOT.splitlines()
        masked, readonly = self.linux.get("maskedPaths") or [], self.linux.get("readonlyPaths") or []
        body += step(f"bind /dev/null or an empty tmpfs over {len(masked)} masked paths (/proc/kcore, /proc/keys, ...) "
                     f"and make {len(readonly)} read-only with everything below them (mount_setattr AT_RECURSIVE): "
                     "kernel knobs stay out of reach")
        body += [array("MASKED", masked), array("READONLY", readonly)]
        body += MASK.splitlines()
        if self.spec["root"].get("readonly"):
            body += step("mount_setattr(/, MOUNT_ATTR_RDONLY): a read-only root")
            body += ["host_tool mount -n -o remount,bind,ro /"]
        if self.spec.get("hostname"):
            body += step(f"sethostname({self.spec['hostname']!r}): only this UTS namespace sees it")
            body += ['host_tool hostname "$HOST_NAME"']
        nnp = ", PR_SET_NO_NEW_PRIVS" if self.process.get("noNewPrivileges") else ""
        caps = len(self.process["capabilities"]["bounding"])
        eff = caps if self.p.uid == 0 else 0
        body += step(f"setgroups/setgid/setuid({self.p.uid}:{self.p.gid}) + capset: {caps} capabilities in the "
                     f"bounding set, {eff} effective{nnp}")
        body += comment("(seccomp(SECCOMP_SET_MODE_FILTER, ...) would come here, last before execve: not "
                        "reproduced, see the header)")
        body += step(f"execve({self.process['args'][0]}): the container's program replaces this shell as PID 1 "
                     "(every descriptor but 0, 1 and 2 closed first: none of the host's may reach the container; "
                     "env --default-signal undoes the SIGINT a background job of bash starts with ignored)")
        body += EXEC.splitlines()
        out += _indent(body)
        out += ["}"]
        return out

    def mount_lines(self, m: dict[str, Any]) -> list[str]:
        dest, kind, options = m["destination"], m.get("type") or "", list(m.get("options") or [])
        if kind == "cgroup" and dest == "/sys/fs/cgroup":
            ro = "ro" in options
            return [*step("mount(cgroup, /sys/fs/cgroup, MS_RDONLY): the container sees its own cgroup, read-only"
                          if ro else "mount(cgroup, /sys/fs/cgroup): the container sees its own cgroup"),
                    f"mount_cgroupfs {'ro' if ro else 'rw'}"]
        if kind == "bind" or "bind" in options or "rbind" in options:
            recursive = "rbind" in options
            attrs = [o for o in options if o in ("ro", "nosuid", "nodev", "noexec")]
            propagation = [o for o in options if o.lstrip("r") in ("private", "shared", "slave", "unbindable")]
            src = m["source"]
            out = step(f"open_tree({src}, OPEN_TREE_CLONE{'|AT_RECURSIVE' if recursive else ''})"
                       + (" + mount_setattr(MOUNT_ATTR_RDONLY)" if "ro" in attrs else "")
                       + f" + move_mount(-> {dest}): a host path shared into the container")
            out.append(f"t=$(in_root {word(dest)} \"$(kind_of {word(src)})\")")
            out.append(f"mount {'--rbind' if recursive else '--bind'} {word(src)} \"$t\"")
            if attrs:
                out.append(f"mount -o remount,bind,{','.join(attrs)} \"$t\"")
            for prop in propagation:
                out.append(f"mount --make-{prop} \"$t\"")
            return out
        why = WHY_MOUNT.get(dest, "as the spec asks")
        opts = ",".join(options)
        return [*step(f"mount({kind}, {dest}): {why}"),
                f"t=$(in_root {word(dest)} dir)",
                f"mount -t {shlex.quote(kind)} " + (f"-o {shlex.quote(opts)} " if opts else "")
                + f"{shlex.quote(m.get('source') or kind)} \"$t\""]

    def main(self) -> list[str]:
        out = ["", "# ================================================================ run it", ""]
        out += MAIN.splitlines()
        return out


def _indent(lines: list[str]) -> list[str]:
    return [("  " + line) if line else line for line in lines]


def _num(value: object) -> str:
    return "*" if value is None or value == -1 else str(value)


def _lower(annotations: dict[str, str]) -> str:
    from pycontain import oci as ocispec

    opts = annotations[ocispec.OVERLAY]
    return next(o for o in opts.split(",") if o.startswith("lowerdir=")).partition("=")[2]


def _etc_word(text: str) -> str:
    """A file's text as one shell word; the hostname (when it is the script's short id) and the leased
    address become expansions."""
    marks = dict(MARK, **{"@@ADDR@@": "ADDR"})
    pattern = re.compile("(" + "|".join(re.escape(k) for k in marks) + ")")
    parts = [p for p in pattern.split(text) if p]
    return "".join(f'"${marks[p]}"' if p in marks else shlex.quote(p) for p in parts) or "''"


def _invocation(cfg: Any) -> str:
    """The command line as it was typed, less --emit-shell (what the script stands for)."""
    argv = sys.argv[1:]
    if "run" in argv:
        argv = argv[argv.index("run"):]
    else:
        argv = ["run", cfg.image, *cfg.command]
    return " ".join(shlex.quote(a) for a in argv if a != "--emit-shell")


def _version() -> str:
    from pycontain import __version__

    return __version__


# ---------------------------------------------------------------- bash, as is
# Plain text the script carries for every container; what differs per container is generated above.

LIBRARY = r'''
# ---------------------------------------------------------------- helpers
die() { printf 'container.sh: %s\n' "$*" >&2; exit 125; }
[ "$(id -u)" = 0 ] || die "run it as root: it makes namespaces, mounts and cgroups"
for tool in "${TOOLS[@]}"; do
  command -v "$tool" >/dev/null || die "$tool is missing: this script needs ${TOOLS[*]}"
done
for layer in "${LAYERS[@]}"; do
  [ -d "$layer" ] || die "layer $layer of $IMAGE is gone from pycontain's store (was the image removed?)"
done

CG_NAME=pycontain-sh-$ID
CG_DIRS=()
WORK= UNSHARE_PID= CONTAINER_PID= VETH= NFT_TABLE= LEASED= LOCK_FD= GO_FD= PIN_DIR=

write_if_present() { if [ -e "$1" ]; then echo "$2" > "$1"; fi; }

enable_v2_controllers() {
  local c want=() have
  have=" $(cat /sys/fs/cgroup/cgroup.subtree_control) "
  for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
    case " cpu cpuset memory pids io " in *" $c "*) [[ $have == *" $c "* ]] || want+=("+$c");; esac
  done
  if [ ${#want[@]} -gt 0 ]; then echo "${want[*]}" > /sys/fs/cgroup/cgroup.subtree_control; fi
}

# The v1 hierarchies (mount points) that carry the controllers `run` uses, from the mount table.
v1_hierarchies() {
  local target opts o
  findmnt -rn -t cgroup -o TARGET,OPTIONS | while read -r target opts; do
    for o in ${opts//,/ }; do
      case " pids memory cpu cpuacct blkio devices " in *" $o "*) echo "$target"; break;; esac
    done
  done
}
v1_dir() {  # the container's directory in the hierarchy of controller $1
  local target opts o
  while read -r target opts; do
    for o in ${opts//,/ }; do [ "$o" != "$1" ] || { echo "$target/$CG_NAME"; return; }; done
  done < <(findmnt -rn -t cgroup -o TARGET,OPTIONS)
  die "no cgroup v1 hierarchy carries the $1 controller"
}

cleanup() {
  local code=$? d i
  trap '' INT TERM HUP PIPE  # finish cleaning up whatever else arrives
  trap - ERR
  set +e
  if [ -n "$UNSHARE_PID" ] && kill -0 "$UNSHARE_PID" 2>/dev/null; then
    kill -KILL "$UNSHARE_PID"  # --kill-child: its PID 1 dies with it, and the whole PID namespace with that
  fi
  [ -z "$UNSHARE_PID" ] || wait "$UNSHARE_PID" 2>/dev/null
  for d in "${CG_DIRS[@]}"; do  # anything still in the cgroup, then the cgroup itself (EBUSY while tasks exit)
    for i in $(seq 1000); do
      [ -d "$d" ] || break
      xargs -r kill -KILL < "$d/cgroup.procs" 2>/dev/null
      rmdir "$d" 2>/dev/null && break
      sleep 0.01
    done
    [ ! -d "$d" ] || printf 'container.sh: cgroup %s is still busy: rmdir it by hand\n' "$d" >&2
  done
  [ -z "$NFT_TABLE" ] || nft delete table ip "$NFT_TABLE" 2>/dev/null
  if [ -n "$VETH" ]; then  # it goes with the container's network namespace, which the kernel destroys lazily
    for i in $(seq 200); do
      ip link show "$VETH" >/dev/null 2>&1 || break
      ip link del "$VETH" 2>/dev/null
      sleep 0.01
    done
  fi
  [ -z "$LEASED" ] || pycontain_ipam release "$ID"
  [ -z "$PIN_DIR" ] || rm -rf -- "$PIN_DIR"
  [ -z "$LOCK_FD" ] || exec {LOCK_FD}>&-
  [ -z "$WORK" ] || rm -rf -- "$WORK"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE
set -E; trap 'exit 125' ERR  # a failed step: 125, as `run` exits when it cannot make the container

pycontain_ipam() {  # pycontain's own IPAM, for the one thing that is bookkeeping rather than a kernel call
  "$PYCONTAIN_PYTHON" -I -S -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); from pycontain import emitshell
sys.exit(emitshell.helper(sys.argv[1:]))' "$PYCONTAIN_PACKAGE" "$@" \
    --state "$PYCONTAIN_STATE" --storage "$PYCONTAIN_STORAGE"
}

# A path inside the container as a path on the host, resolved as the kernel would from the container's
# root (what `run` does with openat2(RESOLVE_IN_ROOT)): a link in the image may point anywhere, but
# never out of $ROOT. What is missing is made ($2: dir, or file for a bind mount of a file).
in_root() {
  local rest=${1#/} cur= part target hops=0
  while [ -n "$rest" ]; do
    part=${rest%%/*}
    if [ "$part" = "$rest" ]; then rest=; else rest=${rest#*/}; fi
    case $part in ''|.) continue;; ..) cur=${cur%/*}; continue;; esac
    if [ -L "$ROOT$cur/$part" ]; then
      hops=$((hops + 1)); [ "$hops" -le 40 ] || die "$1: too many symbolic links in the image"
      target=$(readlink -- "$ROOT$cur/$part")
      case $target in /*) cur=;; esac
      rest=${target#/}${rest:+/$rest}
      continue
    fi
    cur=$cur/$part
    if [ ! -e "$ROOT$cur" ]; then
      if [ -n "$rest" ] || [ "$2" = dir ]; then mkdir -m 755 -- "$ROOT$cur"; else : > "$ROOT$cur"; fi
    fi
  done
  printf '%s\n' "$ROOT$cur"
}
kind_of() { if [ -d "$1" ]; then echo dir; else echo file; fi; }

# /sys/fs/cgroup inside: with the cgroup namespace, a fresh cgroupfs shows the container's cgroup as its root.
mount_cgroupfs() {
  local t target opts o ctl sub
  t=$(in_root /sys/fs/cgroup dir)
  if [ "$CG_VERSION" = 2 ]; then
    mount -t cgroup2 -o "$1,nosuid,nodev,noexec" cgroup2 "$t"
    return
  fi
  mount -t tmpfs -o nosuid,nodev,noexec,mode=755,size=64k tmpfs "$t"  # one directory per hierarchy
  for d in "${CG_DIRS[@]}"; do
    target=${d%/*}
    opts=$(findmnt -rn -o OPTIONS --target "$target" -t cgroup) || continue
    ctl=
    for o in ${opts//,/ }; do
      grep -q "^$o[[:space:]]" /proc/cgroups && ctl+=${ctl:+,}$o
    done
    sub=$t/${target##*/}
    mkdir "$sub"
    mount -t cgroup -o "$1,nosuid,nodev,noexec,$ctl" cgroup "$sub"
  done
  mount -o "remount,bind,$1" "$t"
}

# The steps inside run each in a fresh bash: this prints its program (the settings and functions above).
stage() {
  printf '%s\n' "set -euo pipefail" "trap 'exit 125' ERR" \
    "$(declare -p ID SHORT WORK ROOT CG_NAME CG_VERSION CG_DIRS LOWERDIRS LAYERS COMMAND WORKDIR HOST_NAME \
        RUN_UID RUN_GID RUN_GROUPS CAPS NO_NEW_PRIVS NEW_NETNS LOCK_FD GO_FD)" \
    "$(declare -f die stage write_etc_files container_env in_root kind_of mount_cgroupfs container_init \
        container_setup keep_host_tools via host_tool)" \
    "$1"
}

# After pivot_root the host's files are out of reach, yet the last steps (unmount the old root, mask
# paths, set the hostname, drop privileges, exec) need host programs: the image has none of them, or
# its own. So before the pivot the directories those programs and their libraries live in are opened
# (descriptors survive pivot_root), and each program is started through the dynamic loader with its
# libraries from those directories (the loader named in the binary would be looked up in the image).
# The last shell closes every descriptor but 0, 1 and 2 before it execs the command, so the container
# inherits none of them: the lesson of CVE-2024-21626, where one leaked directory fd led back out.
keep_host_tools() {
  local tool path dir line lib
  declare -gA TOOL=() DIR_FD=()
  LOADER_PATH=
  for tool in "$@"; do
    path=$(readlink -f -- "$(command -v -- "$tool")")
    TOOL[$tool]=$path
    DIR_FD[${path%/*}]=
    while read -r line; do
      case $line in
        *' => /'*) lib=${line#* => }; lib=$(readlink -f -- "${lib%% (*}"); DIR_FD[${lib%/*}]=;;
        /*) LOADER_PATH=$(readlink -f -- "${line%% (*}"); DIR_FD[${LOADER_PATH%/*}]=;;
      esac
    done < <(ldd "$path" 2>/dev/null || true)
  done
  LIBRARY_PATH=
  for dir in "${!DIR_FD[@]}"; do
    exec {fd}<"$dir"
    DIR_FD[$dir]=$fd
    LIBRARY_PATH+=${LIBRARY_PATH:+:}/proc/self/fd/$fd
  done
  if [ -n "$LOADER_PATH" ]; then
    LOADER=("/proc/self/fd/${DIR_FD[${LOADER_PATH%/*}]}/${LOADER_PATH##*/}" --inhibit-cache
            --library-path "$LIBRARY_PATH")
  else
    LOADER=()  # static binaries: nothing to load
  fi
}
via() { local path=${TOOL[$1]}; echo "/proc/self/fd/${DIR_FD[${path%/*}]}/${path##*/}"; }
host_tool() { local tool=$1; shift; LC_ALL=C "${LOADER[@]}" "$(via "$tool")" "$@"; }
'''

LEASE = r'''PIN_DIR=$PYCONTAIN_STATE/containers/$ID
mkdir -p -m 700 "$PIN_DIR"  # no config.json: `pycontain ps` does not list it; `gc` sees its lock held
exec {LOCK_FD}>"$PIN_DIR/lock"
flock -n "$LOCK_FD" || die "cannot lock $PIN_DIR/lock"
LEASED=1
lease=$(pycontain_ipam lease "$ID" --network "$NETWORK" --hostname "$HOST_NAME" --name "$CONTAINER_NAME" \
  --ip "$REQUESTED_IP" "${PUBLISH[@]/#/--publish=}") || die "no address lease on network $NETWORK"
PUBLISHED_PORTS=()
while read -r key a b c d; do
  case $key in
    address) ADDR=$a PREFIXLEN=$b GATEWAY=$c SUBNET=$d;;
    bridge) BRIDGE=$a MAC=${MAC_ADDRESS:-$b};;
    port) PUBLISHED_PORTS+=("$a $b $c $d");;
  esac
done <<< "$lease"'''

RECORD = r'''WORK=$(mktemp -d "${TMPDIR:-/tmp}/pycontain-sh.XXXXXX")
ROOT=$WORK/rootfs
mkdir "$WORK/upper" "$WORK/work" "$WORK/rootfs" "$WORK/etc"
if [ -z "$HOST_NAME" ]; then HOST_NAME=$SHORT; fi
write_etc_files'''

CLONE = r'''if [ "$NEW_NETNS" = 1 ]; then net=--net; else net=; fi
if [ -n "${BRIDGE:-}" ]; then
  # PID 1 waits on this FIFO for its network. Opened here for reading and writing (which never blocks),
  # it has a writer as long as this script lives: if the script dies, PID 1 reads end-of-file and exits.
  mkfifo -m 600 "$WORK/go"
  exec {GO_FD}<>"$WORK/go"
fi
program=$(stage container_init)  # made here: the background job below execs unshare and forks nothing else
namespaces() {
  if [ -n "$GO_FD" ]; then exec {GO_FD}>&-; fi  # only this script writes to the FIFO
  exec unshare --pid --fork --kill-child --mount --propagation unchanged --uts --ipc $net -- "$BASH" -c "$program"
}
if [ "$STDIN_OPEN" = 1 ]; then namespaces <&0 & else namespaces < /dev/null & fi
UNSHARE_PID=$!
while [ -n "${BRIDGE:-}" ] && [ -z "$CONTAINER_PID" ] && kill -0 "$UNSHARE_PID" 2>/dev/null; do
  # PID 1 is unshare's child (in /proc/PID/task/PID/children once unshare has made the namespaces and forked)
  CONTAINER_PID=$(cat "/proc/$UNSHARE_PID/task/$UNSHARE_PID/children" 2>/dev/null || true)
  CONTAINER_PID=${CONTAINER_PID%% *}
  if [ -z "$CONTAINER_PID" ] || [ "$(readlink "/proc/$CONTAINER_PID/ns/pid")" = "$(readlink /proc/self/ns/pid)" ]; then
    CONTAINER_PID=
    sleep 0.005
  fi
done'''

VETH = r'''[ -n "$CONTAINER_PID" ] || die "the container's PID 1 never started"
VETH=pc$SHORT
ip link add "$VETH" type veth peer name eth0 address "$MAC" netns "$CONTAINER_PID"
ip link set "$VETH" master "$BRIDGE"
ip link set "$VETH" type bridge_slave hairpin on
ip link set "$VETH" up'''

INSIDE = r'''in_netns() { nsenter --net="/proc/$CONTAINER_PID/ns/net" -- "$@"; }
in_netns sh -c 'echo "0 2147483647" > /proc/sys/net/ipv4/ping_group_range'  # ping without CAP_NET_RAW, as `run`
in_netns ip addr add "$ADDR/$PREFIXLEN" dev eth0
in_netns ip link set eth0 up
in_netns ip route add default via "$GATEWAY"'''

SYSCTLS = r'''echo 1 > /proc/sys/net/ipv4/ip_forward
echo 1 > "/proc/sys/net/ipv4/conf/$BRIDGE/route_localnet"'''

NFT = r'''NFT_TABLE=pycontain-sh-$SHORT
rules=
PUBLISHED=
for mapping in "${PUBLISHED_PORTS[@]}"; do
  read -r proto host_port ctr_port host_ip <<< "$mapping"
  if [ "$host_ip" = - ]; then match="fib daddr type local"; else match="ip daddr $host_ip"; fi
  for chain in prerouting output; do
    rules+="add rule ip $NFT_TABLE $chain $match $proto dport $host_port dnat to $ADDR:$ctr_port comment \"$ID\""$'\n'
  done
  PUBLISHED+="${PUBLISHED:+, }$host_ip:$host_port/$proto -> $ADDR:$ctr_port"
done
printf '%s\n' "table ip $NFT_TABLE {" \
  "  chain prerouting { type nat hook prerouting priority dstnat; policy accept; }" \
  "  chain output { type nat hook output priority -100; policy accept; }" \
  "  chain postrouting { type nat hook postrouting priority srcnat; policy accept; }" \
  "}" \
  "add rule ip $NFT_TABLE postrouting oifname \"$BRIDGE\" ip saddr 127.0.0.0/8 ip daddr $ADDR masquerade" \
  "$rules" | nft -f -  # the masquerade: a reply to 127.0.0.1 must come back through the host'''

INIT = r'''if [ -n "$LOCK_FD" ]; then exec {LOCK_FD}>&-; fi  # the lease's lock stays unshare's: as long as we live
if [ -n "$GO_FD" ]; then
  read -r _ < "$WORK/go" || exit 125  # the host side attaches eth0 meanwhile (end-of-file: it died)
fi
if [ "$CG_VERSION" = 2 ]; then
  # [explain] write 0 > /sys/fs/cgroup/$CG_NAME/cgroup.procs: the child joins its cgroup before exec
  echo 0 > "${CG_DIRS[0]}/cgroup.procs"
else
  # [explain] write 0 > $CG_NAME/tasks in N v1 hierarchies: the child joins its cgroup before exec
  for d in "${CG_DIRS[@]}"; do echo 0 > "$d/tasks"; done
fi
# [explain] unshare(CLONE_NEWCGROUP): the container sees its own cgroup as the root
exec unshare --cgroup -- "$BASH" -c "$(stage container_setup)"'''

PIVOT = r'''if [ -e "$ROOT/etc/ld.so.preload" ] || [ -L "$ROOT/etc/ld.so.preload" ]; then
  # The loader reads the root's /etc/ld.so.preload into every program it starts: after the pivot that
  # would be the image's file, loaded into this script's privileged host tools.
  die "the image has /etc/ld.so.preload: refusing to run host tools under its root"
fi
keep_host_tools umount mount hostname setpriv env bash
cd "$ROOT"
pivot_root . .  # the old root now sits on top of the new one, at /
host_tool umount -n -l .  # "." is the old root: detached, and with it every host mount
cd /'''

MASK = r'''for path in "${MASKED[@]}"; do
  if [ -L "$path" ] || [ ! -e "$path" ]; then continue; fi
  if [ -d "$path" ]; then
    host_tool mount -n -t tmpfs -o ro,nosuid,nodev,noexec,size=0 tmpfs "$path"
  else
    host_tool mount -n --bind /dev/null "$path"  # the /dev/null made above, not the host's
  fi
done
for path in "${READONLY[@]}"; do
  if [ -L "$path" ] || [ ! -e "$path" ]; then continue; fi
  host_tool mount -n --bind "$path" "$path"
  host_tool mount -n -o remount,bind,ro "$path"
done'''

EXEC = r'''if [ "$NO_NEW_PRIVS" = 1 ]; then nnp=--no-new-privs; else nnp=; fi
container_env
exec -c "${LOADER[@]}" "$(via setpriv)" $nnp --bounding-set="-all,$CAPS" --inh-caps=-all --ambient-caps=-all \
  --reuid="$RUN_UID" --regid="$RUN_GID" --groups="$RUN_GROUPS" \
  -- "${LOADER[@]}" "$(via env)" --default-signal \
  -- "${LOADER[@]}" "$(via bash)" -c '
    for fd in /proc/self/fd/*; do fd=${fd##*/}; if [ "$fd" -gt 2 ]; then exec {fd}<&-; fi; done
    cd -- "$1" || exit 125
    n=$2; shift 2
    unset PWD OLDPWD SHLVL; declare -a SHLVL  # bash would export these; an array it cannot
    while [ "$n" -gt 0 ]; do export -- "$1"; shift; n=$((n - 1)); done
    exec -- "$@"' pycontain-sh "$WORKDIR" "${#ENV[@]}" "${ENV[@]}" "${COMMAND[@]}"'''

MAIN = r'''make_container
code=0
wait "$UNSHARE_PID" || code=$?
UNSHARE_PID=
# [explain] wait4($CONTAINER_PID) -> exit code $code; releasing the cgroup, namespaces vanish with PID 1
exit "$code"'''


# ---------------------------------------------------------------- the lease helper (run by the script)

def helper(argv: list[str]) -> int:
    """`python -m pycontain.emitshell lease ID --network N ... | release ID`, with --state/--storage:
    an address (and host ports) from pycontain's IPAM for a script's container, and the network's bridge
    and nft chains made if missing, as `run` makes them. Prints `address A PREFIXLEN GATEWAY SUBNET`,
    `bridge NAME MAC`, and `port PROTO HOSTPORT CTRPORT HOSTIP` lines. One line and 125 on an error."""
    try:
        return _helper(argv)
    except PycontainError as e:
        print(f"pycontain: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        print(f"pycontain: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""), file=sys.stderr)
        return 125


def _helper(argv: list[str]) -> int:
    import argparse

    from pycontain.state import Paths

    ap = argparse.ArgumentParser(prog="pycontain.emitshell")
    ap.add_argument("action", choices=("lease", "release"))
    ap.add_argument("id")
    ap.add_argument("--state", required=True)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--network", default="bridge")
    ap.add_argument("--hostname", default="")
    ap.add_argument("--name", default="")
    ap.add_argument("--ip", default="")
    ap.add_argument("--publish", action="append", default=[])
    args = ap.parse_args(argv)
    if not re.fullmatch(r"[0-9a-f]{64}", args.id):
        raise UsageError(f"invalid id {args.id!r}")
    paths = Paths(args.state, args.storage)
    from pycontain.network import ipam

    if args.action == "release":
        for name in ipam.names(paths):
            ipam.release(paths, name, {args.id})
        ipam.release_ports(paths, {args.id})
        return 0
    net = ipam.load_or_create_default(paths, args.network)
    address = ipam.allocate(paths, net, args.id, args.name, args.hostname, address=args.ip or None)
    ports = []
    try:
        mappings = []
        for spec in args.publish:
            proto, host_port, ctr_port, host_ip = spec.split()
            mappings.append({"protocol": proto, "host_port": int(host_port), "container_port": int(ctr_port),
                             "host_ip": "" if host_ip == "-" else host_ip})
        if mappings:
            ports = ipam.reserve_ports(paths, args.id, mappings)
        _ensure_bridge(paths, net)
    except BaseException:
        ipam.release(paths, net["name"], {args.id})
        ipam.release_ports(paths, {args.id})
        raise
    print(f"address {address} {net['prefixlen']} {net['gateway']} {net['subnet']}")
    print(f"bridge {net['bridge']} {ipam.mac_of(address)}")
    for p in ports:
        print(f"port {p['protocol']} {p['host_port']} {p['container_port']} {p.get('host_ip') or '-'}")
    return 0


def _ensure_bridge(paths: Any, net: dict[str, Any]) -> None:
    """The network's bridge and nft chains, made if missing, under the network's lock: what `run` does
    on a network's first container (bridged.attach)."""
    from pycontain.network import bridge, ipam, nat
    from pycontain.network.rtnl import Rtnl

    info = ipam.load(paths, net["name"])
    with Rtnl() as ipr, ipam.network_lock(paths, info["name"]):
        _, created = bridge.ensure(ipr, dict(info, shown=ipam.display(info["name"])))
        if created:
            nat.setup_network(info)


if __name__ == "__main__":
    sys.exit(helper(sys.argv[1:]))
