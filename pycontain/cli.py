"""The command line: parse once into config objects, call the runtime, map errors to exit codes.

This is the only module that prints errors or chooses exit codes: 125 for pycontain's own errors, 126
when the command cannot be executed, 127 when it is not found, else the container's own status.

The parser is a small table-driven one rather than argparse: argparse (with the re and gettext it
imports) costs ~8 ms per start on the reference VM, and `pycontain run` must start faster than runc.
It accepts what Docker's CLI accepts: `-it`, `-e K=V`, `-eK=V`, `--name=x`, `--name x`, and options end
at the image name (everything after it is the container's command).
"""

from __future__ import annotations

import gc
import os
import sys

from pycontain import __version__
from pycontain.config import parse_signal  # noqa: F401 - `kill -s` and image configs share it
from pycontain.errors import NotRootError, PycontainError, UsageError, leave

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pycontain.state import ContainerState, Status

FLAG, VALUE, MULTI = "flag", "value", "multi"
# More text for a command's --help, after its options (plugin modules may add to it: HELP in the module).
HELP: dict[str, str] = {}

# (names, dest, kind, metavar, help)
# The resource limits, shared by `run`/`create` and `update`.
LIMIT_OPTIONS = [
    (("--pids-limit",), "pids_limit", VALUE, "N", "maximum number of processes (default 2048, -1: none)"),
    (("-m", "--memory"), "memory", VALUE, "BYTES", "memory limit, e.g. 512m or 1g"),
    (("--memory-swap",), "memory_swap", VALUE, "BYTES", "memory plus swap limit (-1: unlimited swap)"),
    (("--memory-reservation",), "memory_reservation", VALUE, "BYTES", "soft memory limit"),
    (("--cpus",), "cpus", VALUE, "N", "CPU quota in CPUs, e.g. 0.5"),
    (("-c", "--cpu-shares"), "cpu_shares", VALUE, "N", "relative CPU weight (default 1024)"),
    (("--cpuset-cpus",), "cpuset_cpus", VALUE, "LIST", "CPUs allowed, e.g. 0-1,3"),
]
RUN_OPTIONS = [
    (("-d", "--detach"), "detach", FLAG, "", "run in the background and print the container id"),
    (("-i", "--interactive"), "interactive", FLAG, "", "keep stdin open and connected"),
    (("-t", "--tty"), "tty", FLAG, "", "allocate a terminal (pty) inside the container"),
    (("--rm",), "rm", FLAG, "", "remove the container when it exits"),
    (("--name",), "name", VALUE, "NAME", "name the container (unique)"),
    (("-e", "--env"), "env", MULTI, "K=V", "set an environment variable (K alone copies the host's)"),
    (("--env-file",), "env_file", MULTI, "FILE", "read K=V lines from FILE"),
    (("-w", "--workdir"), "workdir", VALUE, "DIR", "working directory inside the container"),
    (("-u", "--user"), "user", VALUE, "USER[:GROUP]", "user (name or uid) from the image's /etc/passwd"),
    (("-h", "--hostname"), "hostname", VALUE, "NAME", "container hostname (default: short id)"),
    (("--entrypoint",), "entrypoint", VALUE, "CMD", "override the image's entrypoint"),
    (("-v", "--volume"), "volume", MULTI, "SRC:DST[:ro]",
     "bind a host path (/host:/ctr), mount a named volume (NAME:/ctr) or an anonymous one (/ctr)"),
    (("--mount",), "mount", MULTI, "type=..,target=..",
     "a mount: type=bind|volume|tmpfs,source=..,target=..[,readonly][,volume-nocopy][,tmpfs-size=..]"),
    (("--tmpfs",), "tmpfs", MULTI, "PATH[:OPTS]", "a tmpfs at PATH, e.g. /run:size=64m,mode=1777"),
    (("--volumes-from",), "volumes_from", MULTI, "CONTAINER[:ro|rw]", "the volumes and binds of another container"),
    (("--read-only",), "read_only", FLAG, "", "mount the root filesystem read-only"),
    (("--network", "--net"), "network", VALUE, "MODE",
     "bridge (default: the `pycontain` network), none (loopback only), host, or a network name"),
    (("-p", "--publish"), "publish", MULTI, "[IP:][HOST:]CTR[/udp]", "publish a container port on the host"),
    (("--pull",), "pull", VALUE, "POLICY", "missing (default): pull if absent; never; always"),
    (("--log-opt",), "log_opt", MULTI, "K=V",
     "log rotation of a detached container: max-size=SIZE (default 10m), max-file=N (default 3)"),
    (("--runtime",), "runtime", VALUE, "RUNTIME",
     "the OCI runtime that runs it: pycontain (default), runc, crun, or a path"),
    *LIMIT_OPTIONS,
    (("--cap-add",), "cap_add", MULTI, "CAP", "add a capability (e.g. NET_ADMIN, or ALL)"),
    (("--cap-drop",), "cap_drop", MULTI, "CAP", "drop a capability (e.g. CHOWN, or ALL)"),
    (("--privileged",), "privileged", FLAG, "",
     "every capability, host devices, no seccomp filter, no masked paths: the container is the host's root"),
    (("--security-opt",), "security_opt", MULTI, "OPT",
     "seccomp=unconfined, seccomp=PROFILE.json, no-new-privileges[=true|false]"),
    (("--device",), "device", MULTI, "HOST[:CTR[:rwm]]", "give the container a host device"),
    (("--ulimit",), "ulimit", MULTI, "NAME=SOFT[:HARD]", "a resource limit, e.g. nofile=1024:2048"),
    (("--sysctl",), "sysctl", MULTI, "K=V", "a namespaced kernel parameter, e.g. net.ipv4.ip_forward=1"),
    (("--userns",), "userns", VALUE, "MODE",
     "auto: root inside maps to an unprivileged host range; host: share the host's ids"),
    (("--init",), "init", FLAG, "", "run tini as PID 1: it reaps zombies and forwards signals to the command"),
    (("--stop-signal",), "stop_signal", VALUE, "SIGNAL", "the signal `stop` sends (default: the image's, else TERM)"),
    (("--stop-timeout",), "stop_timeout", VALUE, "SECONDS", "`stop`'s default wait before SIGKILL (default 10)"),
    (("--restart",), "restart", VALUE, "POLICY",
     "restart a detached container when it exits: no (default), on-failure[:N], always, unless-stopped"),
    (("--health-cmd",), "health_cmd", VALUE, "CMD", "a command (run with /bin/sh -c) that checks the container"),
    (("--health-interval",), "health_interval", VALUE, "DURATION", "time between checks (default 30s)"),
    (("--health-timeout",), "health_timeout", VALUE, "DURATION", "a check that runs longer fails (default 30s)"),
    (("--health-retries",), "health_retries", VALUE, "N", "failures in a row that make it unhealthy (default 3)"),
    (("--health-start-period",), "health_start_period", VALUE, "DURATION",
     "failures in this first time do not count (default 0s)"),
    (("--no-healthcheck",), "no_healthcheck", FLAG, "", "disable the image's HEALTHCHECK"),
    (("--ip",), "ip", VALUE, "ADDRESS", "the container's IPv4 address on a user network"),
    (("--network-alias",), "network_alias", MULTI, "NAME", "another name for it on a user network"),
    (("--mac-address",), "mac_address", VALUE, "MAC", "eth0's MAC address, e.g. 02:42:ac:11:00:02"),
    (("--dns",), "dns", MULTI, "IP", "a name server for its resolv.conf (replaces the host's)"),
    (("--dns-search",), "dns_search", MULTI, "DOMAIN", "a search domain for its resolv.conf (. for none)"),
    (("--dns-option",), "dns_option", MULTI, "OPT", "a resolv.conf option, e.g. ndots:2"),
    (("--add-host",), "add_host", MULTI, "HOST:IP", "a line in its /etc/hosts (IP may be host-gateway)"),
    (("--expose",), "expose", MULTI, "PORT[/PROTO]", "expose a port or a range (8000-8010) without publishing it"),
    (("-P", "--publish-all"), "publish_all", FLAG, "", "publish every exposed port on a free host port"),
    (("-l", "--label"), "label", MULTI, "K=V", "set a label (ps --filter label=K=V finds it)"),
    (("--label-file",), "label_file", MULTI, "FILE", "read K=V label lines from FILE"),
    (("--cidfile",), "cidfile", VALUE, "FILE", "write the container's id to FILE (which must not exist)"),
    (("--pid",), "pid", VALUE, "MODE", "host: share the host's PID namespace; container:NAME: that one's"),
    (("--ipc",), "ipc", VALUE, "MODE", "private (default), shareable, host, or container:NAME (a shareable one)"),
    (("--uts",), "uts", VALUE, "MODE", "host: share the host's hostname (UTS namespace)"),
    (("--shm-size",), "shm_size", VALUE, "BYTES", "size of /dev/shm (default 64m)"),
    (("--group-add",), "group_add", MULTI, "GROUP", "an additional group (name in the image's /etc/group, or gid)"),
    (("--oom-kill-disable",), "oom_kill_disable", FLAG, "", "do not OOM-kill it (cgroup v1; use with -m)"),
    (("--memory-swappiness",), "memory_swappiness", VALUE, "0-100", "how readily its memory is swapped"),
    (("--cpu-period",), "cpu_period", VALUE, "MICROSECONDS", "the CFS period (default 100000)"),
    (("--cpu-quota",), "cpu_quota", VALUE, "MICROSECONDS", "CPU time per CFS period"),
    (("--blkio-weight",), "blkio_weight", VALUE, "10-1000", "relative block I/O weight"),
    (("--platform",), "platform", VALUE, "PLATFORM", "the image's platform: only this host's (linux/amd64)"),
    (("--log-driver",), "log_driver", VALUE, "DRIVER", "json-file (default) or none"),
    (("--explain",), "explain", FLAG, "", "narrate each kernel step as it happens"),
    (("--emit-shell",), "emit_shell", FLAG, "",
     "print a bash script that builds the same container with standard tools (unshare, mount, ip, nft ...)"),
]
# The flags above whose parsing _rare_options does: checked one dict lookup each on the common path.
RARE_RUN_FLAGS = ("ip", "network_alias", "mac_address", "dns", "dns_search", "dns_option", "add_host", "expose",
                  "publish_all", "label", "label_file", "cidfile", "pid", "ipc", "uts", "shm_size", "group_add",
                  "oom_kill_disable", "memory_swappiness", "cpu_period", "cpu_quota", "blkio_weight", "platform",
                  "log_driver")
EXEC_OPTIONS = [
    (("-i", "--interactive"), "interactive", FLAG, "", "keep stdin open and connected"),
    (("-t", "--tty"), "tty", FLAG, "", "allocate a terminal"),
    (("-e", "--env"), "env", MULTI, "K=V", "set an environment variable"),
    (("-w", "--workdir"), "workdir", VALUE, "DIR", "working directory"),
    (("-u", "--user"), "user", VALUE, "USER[:GROUP]", "user to run as"),
    (("--explain",), "explain", FLAG, "", "narrate each kernel step"),
]
COMMANDS: dict[str, tuple[list[Any], str, str]] = {
    "run": (RUN_OPTIONS, "IMAGE [COMMAND [ARG...]]", "create and start a container"),
    "create": ([o for o in RUN_OPTIONS if o[1] not in ("detach", "rm", "emit_shell")] + [RUN_OPTIONS[3]],
               "IMAGE [COMMAND [ARG...]]", "create a container without starting it"),
    "start": ([(("-a", "--attach"), "attach", FLAG, "", "attach to its output (and exit with its exit code)"),
               (("-i", "--interactive"), "interactive", FLAG, "", "attach its stdin too"),
               (("--detach-keys",), "detach_keys", VALUE, "KEYS", "keys that detach (default ctrl-p,ctrl-q)"),
               (("--all-restartable",), "all_restartable", FLAG, "",
                "the boot hook: every `always` and `unless-stopped` container (records restored after a reboot)")],
              "CONTAINER...", "start stopped containers (in the background)"),
    "attach": ([(("--no-stdin",), "no_stdin", FLAG, "", "do not attach stdin"),
                (("--sig-proxy",), "sig_proxy", VALUE, "BOOL",
                 "pass received signals to the container (default true; --sig-proxy=false: not; not with -t)"),
                (("--detach-keys",), "detach_keys", VALUE, "KEYS", "keys that detach (default ctrl-p,ctrl-q)")],
               "CONTAINER", "attach to a running container's terminal or output"),
    "exec": (EXEC_OPTIONS, "CONTAINER COMMAND [ARG...]", "run a command in a running container"),
    "ps": ([(("-a", "--all"), "all", FLAG, "", "show stopped containers too"),
            (("-q", "--quiet"), "quiet", FLAG, "", "only ids"),
            (("-f", "--filter"), "filter", MULTI, "KEY=VALUE",
             "status, name, id, label, ancestor, network, exited, before, since, volume"),
            (("--format",), "format", VALUE, "TEMPLATE", "a Go template (as Docker's), `table ...`, or json"),
            (("-n", "--last"), "last", VALUE, "N", "the N most recently created containers (any state)"),
            (("-l", "--latest"), "latest", FLAG, "", "the most recently created container (any state)"),
            (("-s", "--size"), "size", FLAG, "", "the size of each container's writable layer"),
            (("--no-trunc",), "no_trunc", FLAG, "", "full ids and commands")], "", "list containers"),
    "logs": ([(("-f", "--follow"), "follow", FLAG, "", "keep following the output"),
              (("--tail", "-n"), "tail", VALUE, "N", "only the last N lines"),
              (("--since",), "since", VALUE, "TIME",
               "only lines since TIME (2013-01-02T13:23:37Z, a Unix timestamp, or relative: 10m, 2h)"),
              (("--until",), "until", VALUE, "TIME", "only lines before TIME (same forms)"),
              (("-t", "--timestamps"), "timestamps", FLAG, "", "show each line's time"),
              (("--details",), "details", FLAG, "", "show the extra attributes of each line")],
             "CONTAINER", "show a container's output"),
    "top": ([], "CONTAINER", "list the processes of a container"),
    "stop": ([(("-t", "--time"), "time", VALUE, "SECONDS", "seconds to wait before SIGKILL (default: the "
               "container's --stop-timeout, else 10)"),
              (("-s", "--signal"), "signal", VALUE, "SIGNAL",
               "signal to send (default: its --stop-signal, else TERM)")],
             "CONTAINER...", "stop containers (SIGTERM, then SIGKILL)"),
    "kill": ([(("-s", "--signal"), "signal", VALUE, "SIGNAL", "signal to send (default KILL)")],
             "CONTAINER...", "send a signal to containers"),
    "rm": ([(("-f", "--force"), "force", FLAG, "", "kill the container first if it is running"),
            (("-v", "--volumes"), "volumes", FLAG, "", "remove its anonymous volumes too (named ones stay)")],
           "CONTAINER...", "remove containers"),
    "wait": ([], "CONTAINER...", "wait for containers to exit and print their exit codes"),
    "inspect": ([(("-f", "--format"), "format", VALUE, "TEMPLATE", "a Go template applied to each (as Docker's)"),
                 (("--type",), "type", VALUE, "TYPE", "container, image, network or volume: that kind only")],
                "CONTAINER|IMAGE...", "show details as JSON (a network or volume too)"),
    "gc": ([], "", "release whatever a killed pycontain left behind"),
}
# Commands defined in other modules, imported only when used (or for --help), so that the `run` path
# never pays for them. Each module has COMMANDS (same shape as above) and HANDLERS.
PLUGINS = {
    "pycontain.images.commands": ("import", "images", "pull", "push", "rmi", "tag", "history", "save", "load",
                                  "login", "logout", "image"),
    "pycontain.stats": ("stats", "update"),
    "pycontain.network.commands": ("network", "port", "network prune"),
    "pycontain.build.commands": ("build", "builder", "builder prune"),
    "pycontain.images.changes": ("diff", "commit"),
    "pycontain.copy": ("cp", "export"),
    "pycontain.volumes": ("volume", "volume create", "volume ls", "volume inspect", "volume rm", "volume prune"),
    "pycontain.system": ("info", "version", "system", "system info", "system df", "system prune", "events",
                         "system events"),
    "pycontain.lifecycle": ("restart", "pause", "unpause", "rename", "container prune"),
    "pycontain.completion": ("completion",),
    "pycontain.compose.commands": ("compose",),
    "pycontain.doctor": ("doctor",),
    "pycontain.verify": ("verify",),
}
# Docker's management-command spellings (`image build`, `container diff`): the second word picks the
# command. A "group sub" key of COMMANDS is its own command; ALIASES maps the rest onto a top-level one.
ALIASES = {
    "image build": "build", "image history": "history", "image ls": "images", "image list": "images",
    "image rm": "rmi", "image remove": "rmi", "image pull": "pull", "image push": "push", "image tag": "tag",
    "image save": "save", "image load": "load", "image import": "import", "image inspect": "inspect",
    "container run": "run", "container create": "create", "container start": "start", "container exec": "exec",
    "container ls": "ps", "container list": "ps", "container ps": "ps", "container logs": "logs",
    "container top": "top", "container stop": "stop", "container kill": "kill", "container rm": "rm",
    "container remove": "rm", "container wait": "wait", "container inspect": "inspect",
    "container diff": "diff", "container commit": "commit", "container cp": "cp",
    "container restart": "restart", "container pause": "pause", "container unpause": "unpause",
    "container rename": "rename", "container port": "port", "container stats": "stats",
    "container update": "update", "container export": "export", "container attach": "attach",
    "volume list": "volume ls", "volume remove": "volume rm",
}
# Commands any user may run: completion reads no state (`source <(pycontain completion bash)`); doctor says
# itself what a non-root user lacks.
NO_ROOT = {"completion", "doctor"}
# Commands whose options end at their first positional argument (the rest belongs to the container).
STOP_AT_POSITIONAL = {"run", "create", "exec", "compose", "compose exec", "compose run"}


def parse_options(spec: list[Any], args: list[str], command: str) -> tuple[dict[str, Any], list[str]]:
    by_name = {name: (dest, kind) for names, dest, kind, _, _ in spec for name in names}
    opts: dict[str, Any] = {dest: ([] if kind == MULTI else (False if kind == FLAG else None))
                            for _, dest, kind, _, _ in spec}
    positionals: list[str] = []
    i = 0

    def take(dest: str, kind: str, value: str) -> None:
        if kind == MULTI:
            opts[dest].append(value)
        else:
            opts[dest] = value

    while i < len(args):
        arg = args[i]
        i += 1
        if positionals and command in STOP_AT_POSITIONAL:
            positionals.append(arg)
            continue
        if arg == "--":
            positionals.extend(args[i:])
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name not in by_name:
                raise UsageError(f"unknown flag {name} for `pycontain {command}` (see `pycontain {command} --help`)")
            dest, kind = by_name[name]
            if kind == FLAG:
                if eq and value not in ("true", "false"):
                    raise UsageError(f"flag {name} takes no value")
                opts[dest] = value != "false"
                continue
            if not eq:
                value, i = _next_value(args, i, name)
            take(dest, kind, value)
        elif arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                name = "-" + arg[j]
                if name not in by_name:
                    raise UsageError(
                        f"unknown flag {name} for `pycontain {command}` (see `pycontain {command} --help`)")
                dest, kind = by_name[name]
                if kind == FLAG:
                    opts[dest] = True
                    j += 1
                    continue
                value = arg[j + 1:].removeprefix("=")
                if not value:
                    value, i = _next_value(args, i, name)
                take(dest, kind, value)
                break
        else:
            positionals.append(arg)
    return opts, positionals


def _next_value(args: list[str], i: int, name: str) -> tuple[str, int]:
    """The argument after a flag that takes a value, and the index after it."""
    if i >= len(args):
        raise UsageError(f"flag {name} needs a value")
    return args[i], i + 1


def usage(command: str | None = None) -> str:
    if command is None:
        load_all_plugins()
        lines = ["Usage: pycontain [--root DIR] [--explain] COMMAND [OPTIONS]", "",
                 "A small, readable Linux container runtime. Commands:"]
        lines += [f"  {name:<8} {desc}" for name, (_, _, desc) in COMMANDS.items() if " " not in name]
        lines += ["", "Global options:", "  --root DIR   keep all state under DIR (also: PYCONTAIN_ROOT)",
                  "  --explain    narrate each kernel step", "  --version    print the version",
                  "", "Run `pycontain COMMAND --help` for a command's options."]
        return "\n".join(lines)
    spec, args, desc = COMMANDS[command]
    return command_usage(command, spec, args, desc) + (f"\n\n{HELP[command]}" if command in HELP else "")


def command_usage(command: str, spec: list[Any], args: str, desc: str) -> str:
    """One command's --help: usage line, description, its options (compose's subcommands use it too)."""
    lines = [f"Usage: pycontain {command} [OPTIONS] {args}".rstrip(), "", desc[:1].upper() + desc[1:] + ".", ""]
    if spec:
        lines.append("Options:")
        for names, _, _, metavar, text in spec:
            flag = ", ".join(names) + (f" {metavar}" if metavar else "")
            lines.append(f"  {flag:<28} {text}")
    return "\n".join(lines)


# ---------------------------------------------------------------- commands

def config_from(opts: dict[str, Any], positionals: list[str]) -> Any:
    from pycontain import config as c
    from pycontain import oci as ocispec

    if not positionals:
        raise UsageError("an image is required: pycontain run [OPTIONS] IMAGE [COMMAND [ARG...]]")
    env = []
    for path in opts["env_file"]:
        env += c.parse_env(c.read_env_file(path))
    env += c.parse_env(opts["env"])
    limits = _limits_from(opts)
    # Docker's default is its bridge network; PYCONTAIN_NETWORK changes the default (the test suite
    # sets `none`, so that only the network tests, each in its own network namespace, build bridges).
    network = c.validate_network(opts["network"] or os.environ.get("PYCONTAIN_NETWORK") or "bridge")
    entrypoint = None
    if opts["entrypoint"] is not None:
        entrypoint = (opts["entrypoint"],) if opts["entrypoint"] else ()
    rare = _rare_options(opts, network, limits) if network.startswith("container:") or any(
        opts.get(k) not in (None, False, []) for k in RARE_RUN_FLAGS) else {}
    limits = rare.pop("limits", limits)
    return c.ContainerConfig(
        image=positionals[0],
        command=tuple(positionals[1:]),
        entrypoint=entrypoint,
        name=c.validate_name(opts["name"]) if opts["name"] is not None else None,
        env=tuple(env),
        workdir=c.validate_workdir(opts["workdir"]) if opts["workdir"] else None,
        user=opts["user"],
        hostname=c.validate_hostname(opts["hostname"]) if opts["hostname"] else None,
        interactive=opts["interactive"],
        tty=opts["tty"],
        detach=opts.get("detach", False),
        remove=opts["rm"],
        read_only=opts["read_only"],
        network=network,
        mounts=c.parse_mounts(opts["volume"], opts["mount"], opts["tmpfs"]),
        volumes_from=tuple(c.parse_volumes_from(v) for v in opts["volumes_from"]),
        ports=tuple(c.parse_publish(p) for p in opts["publish"]),
        pull=c.validate_pull(opts["pull"]),
        runtime=c.validate_runtime(opts.get("runtime")),
        limits=limits,
        security=ocispec.parse_security(opts["cap_add"], opts["cap_drop"], opts["privileged"],
                                        opts["security_opt"], opts["device"], opts["ulimit"], opts["sysctl"],
                                        opts["userns"], network),
        **c.parse_log_opts(opts["log_opt"]),
        **_lifecycle_options(opts),
        **rare,
    )


def _rare_options(opts: dict[str, Any], network: str, limits: Any) -> dict[str, Any]:
    """The flags of RARE_RUN_FLAGS that were given, checked (with Docker's conflicts) into config fields."""
    from pycontain import config as c

    out: dict[str, Any] = {}
    bridge = network not in c.NETWORK_MODES and not network.startswith("container:")
    user_net = bridge and network != "pycontain"
    if opts.get("ip") is not None:
        if not user_net:
            raise UsageError("--ip needs a user network (pycontain network create NAME, then --network NAME), "
                             "as with Docker")
        out["ip"] = c.parse_ipv4(opts["ip"], "--ip")
    if opts.get("network_alias"):
        if not user_net:
            raise UsageError("--network-alias needs a user network (pycontain network create NAME), as with Docker")
        out["network_aliases"] = tuple(dict.fromkeys(c.parse_network_alias(a) for a in opts["network_alias"]))
    if opts.get("mac_address") is not None:
        if not bridge:
            raise UsageError(f"--mac-address needs a bridge network; --network {network} has no eth0 of its own")
        out["mac_address"] = c.parse_mac(opts["mac_address"])
    joined = network.startswith("container:")
    for flag, key, parse in (("dns", "dns", c.parse_dns), ("dns_search", "dns_search", c.parse_dns_search),
                             ("dns_option", "dns_options", c.parse_dns_option),
                             ("add_host", "add_hosts", c.parse_add_host)):
        if opts.get(flag):
            if joined:
                raise UsageError(f"conflicting options: --{flag.replace('_', '-')} and --network {network} "
                                 "(it uses that container's files)")
            out[key] = tuple(parse(v) for v in opts[flag])
    if opts.get("expose"):
        if joined:
            raise UsageError(f"conflicting options: --expose and --network {network}")
        out["expose"] = tuple(dict.fromkeys(p for spec in opts["expose"] for p in c.parse_expose(spec)))
    if opts.get("publish_all"):
        if not bridge:
            raise UsageError(f"-P publishes ports on a bridge network; --network {network} has none")
        out["publish_all"] = True
    if opts.get("label") or opts.get("label_file"):
        out["labels"] = c.parse_labels(opts.get("label") or [], opts.get("label_file") or [])
    if opts.get("cidfile") is not None:
        if not opts["cidfile"]:
            raise UsageError("--cidfile needs a file name")
        out["cidfile"] = os.path.abspath(opts["cidfile"])
    if opts.get("pid") is not None:
        out["pid"] = c.parse_namespace_mode(opts["pid"], "--pid", ("host", "container:"))
    if opts.get("ipc") is not None:
        mode = c.parse_namespace_mode(opts["ipc"], "--ipc", ("private", "shareable", "host", "container:", "none"))
        out["ipc"] = "private" if mode == "none" else mode
    if opts.get("uts") is not None:
        out["uts"] = c.parse_namespace_mode(opts["uts"], "--uts", ("host",))
        if opts.get("hostname"):
            raise UsageError("conflicting options: --hostname and --uts host (the host's name is the container's)")
    if joined and opts.get("hostname"):
        raise UsageError(f"conflicting options: --hostname and --network {network} (it has that container's name)")
    if opts.get("shm_size") is not None:
        out["shm_size"] = c.parse_shm_size(opts["shm_size"])
        if out.get("ipc", "").startswith(("host", "container:")):
            raise UsageError(f"conflicting options: --shm-size and --ipc {out['ipc']} (its /dev/shm is not its own)")
    if opts.get("group_add"):
        out["group_add"] = tuple(dict.fromkeys(c.parse_group(g) for g in opts["group_add"]))
    if opts.get("platform") is not None:
        c.validate_platform(opts["platform"])
    if opts.get("log_driver") is not None:
        out["log_driver"] = c.validate_log_driver(opts["log_driver"])
    extra = {k: opts.get(k) for k in ("memory_swappiness", "cpu_period", "cpu_quota", "blkio_weight")}
    if opts.get("oom_kill_disable") or any(v is not None for v in extra.values()):
        out["limits"] = c.parse_extra_limits(limits, extra["memory_swappiness"], bool(opts.get("oom_kill_disable")),
                                             extra["cpu_period"], extra["cpu_quota"], extra["blkio_weight"])
        if out["limits"].oom_kill_disable and out["limits"].memory is None:
            _error("warning: --oom-kill-disable without -m/--memory: the container may use all of the host's memory")
        if out["limits"].blkio_weight is not None and not _blkio_weight_supported():
            _error("warning: this kernel has no block I/O weight (no blkio/io weight file in the cgroup tree): "
                   "--blkio-weight discarded")
            out["limits"] = out["limits"].replace(blkio_weight=None)
    return out


def _blkio_weight_supported() -> bool:
    """Whether a cgroup can take a block I/O weight here (the BFQ or CFQ scheduler's file), as Docker checks."""
    from pycontain import cgroups

    if cgroups.detect() == 2:
        names = ("io.weight", "io.bfq.weight")
        base = cgroups.CGROUP_ROOT
        try:
            with os.scandir(base) as it:
                dirs = [e.path for e in it if e.is_dir(follow_symlinks=False)][:1]
        except OSError:
            dirs = []
        return any(os.path.exists(f"{d}/{n}") for d in dirs for n in names)
    return any(os.path.exists(f"{cgroups.CGROUP_ROOT}/blkio/{n}") for n in ("blkio.weight", "blkio.bfq.weight"))


def _lifecycle_options(opts: dict[str, Any]) -> dict[str, Any]:
    """--init, --stop-signal, --stop-timeout, --restart and the health check flags (only those given:
    the common `run` checks one dict lookup each and builds nothing)."""
    from pycontain import config as c

    out: dict[str, Any] = {}
    if opts.get("init"):
        out["init"] = True
    if opts.get("stop_signal") is not None:
        out["stop_signal"] = c.validate_stop_signal(opts["stop_signal"])
    if opts.get("stop_timeout") is not None:
        out["stop_timeout"] = c.parse_stop_timeout(opts["stop_timeout"])
    if opts.get("restart") is not None:
        out["restart"] = c.parse_restart(opts["restart"])
        if out["restart"] is not None and opts.get("rm"):
            raise UsageError("conflicting options: --restart and --rm (a removed container cannot be restarted)")
    if any(opts.get(k) is not None for k in ("health_cmd", "health_interval", "health_timeout", "health_retries",
                                             "health_start_period")) or opts.get("no_healthcheck"):
        out["healthcheck"] = c.parse_healthcheck(opts.get("health_cmd"), opts.get("health_interval"),
                                                 opts.get("health_timeout"), opts.get("health_retries"),
                                                 opts.get("health_start_period"), bool(opts.get("no_healthcheck")))
    return out


LIMIT_FLAGS = ("memory", "memory_swap", "memory_reservation", "cpus", "cpu_shares", "cpuset_cpus")


def _limits_from(opts: dict[str, Any], base: Any = None) -> Any:
    from pycontain import config as c

    return c.parse_limits(pids=opts.get("pids_limit"), base=base, **{k: opts.get(k) for k in LIMIT_FLAGS})


def cmd_run(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import runtime

    cfg = config_from(opts, pos)
    if opts.get("emit_shell"):
        from pycontain import emitshell

        return emitshell.cmd_emit(paths, cfg)
    if cfg.tty and cfg.interactive and not cfg.detach and not os.isatty(0):
        # Only -i needs our stdin to be a terminal: -t alone gives the container one for its output.
        raise UsageError("the input device is not a TTY: drop -t, or run pycontain from a terminal")
    if cfg.detach:
        print(runtime.run_detached(paths, cfg).id)
        return 0
    return runtime.run(paths, cfg)


def cmd_create(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import runtime

    opts["detach"] = True
    rec, lock_fd = runtime.create(paths, config_from(opts, pos), starting=False)
    os.close(lock_fd)
    print(rec.id)
    return 0


def cmd_start(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import runtime

    if opts.get("all_restartable"):
        if pos:
            raise UsageError("start --all-restartable takes no container names")
        for name in runtime.start_restartable(paths):
            print(name)
        return 0
    need(pos, "a container")
    if opts.get("attach") or opts.get("interactive"):
        return _start_attached(paths, opts, pos)
    return each_ref(pos, lambda ref: print(ref) if runtime.start(paths, ref) else None)


def _start_attached(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    """`start -a [-i]`: the monitor gets one end of a socket pair as an attach client before the container
    runs (so not a byte of its output is missed); this process relays the other end."""
    import _socket

    from pycontain import attach, runtime, state

    if len(pos) > 1:
        raise UsageError("you cannot start and attach multiple containers at once")
    keys = attach.parse_detach_keys(opts["detach_keys"] if opts.get("detach_keys") is not None else "ctrl-p,ctrl-q")
    rec = state.find(paths, pos[0])
    if runtime.live_pid(rec) is not None:  # running already: attach, as Docker's `start -a` does
        return attach.attach(rec, bool(opts.get("interactive")), True, opts.get("detach_keys"))
    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    mine = ours.detach()
    try:
        runtime.start(paths, pos[0], attach_fd=theirs.detach())
    except BaseException:
        os.close(mine)
        raise
    cfg = rec.config
    stdin = bool(opts.get("interactive")) and cfg.interactive
    return attach.relay(mine, cfg.tty, stdin, not cfg.tty, keys, close_stdin=True)


def cmd_attach(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import attach, runtime, state
    from pycontain.errors import ContainerStateError

    proxy = (opts.get("sig_proxy") or "true").lower()
    if proxy not in ("true", "false", "1", "0") and not pos:
        # Docker's --sig-proxy is a boolean flag: a bare `--sig-proxy CTR` means true, and CTR is the container.
        pos, proxy = [opts["sig_proxy"]], "true"
    need(pos, "a container", exactly=1)
    if proxy not in ("true", "false", "1", "0"):
        raise UsageError(f"invalid --sig-proxy {opts['sig_proxy']!r}: expected true or false")
    attach.parse_detach_keys(opts["detach_keys"] or "ctrl-p,ctrl-q")  # a bad value fails before anything else
    rec = state.find(paths, pos[0])
    if rec.status() == state.PAUSED:
        raise ContainerStateError(f"container {rec.name} is paused: unpause it before attaching")
    if runtime.live_pid(rec) is None:
        raise ContainerStateError(f"container {rec.name} is not running; start it with `pycontain start -a {rec.name}`")
    return attach.attach(rec, not opts.get("no_stdin"), proxy in ("true", "1"), opts.get("detach_keys"))


def cmd_exec(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import config as c
    from pycontain import runtime

    if len(pos) < 2:
        raise UsageError("usage: pycontain exec [OPTIONS] CONTAINER COMMAND [ARG...]")
    if opts["tty"] and not os.isatty(0):
        raise UsageError("the input device is not a TTY: drop -t, or run pycontain from a terminal")
    workdir = c.validate_workdir(opts["workdir"]) if opts["workdir"] else None
    return runtime.exec_(paths, pos[0], pos[1:], c.parse_env(opts["env"]), workdir, opts["user"],
                         opts["tty"], opts["interactive"])


# Docker's `ps` columns: placeholder -> header, and its default table.
PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
              "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
              "Names": "NAMES", "Labels": "LABELS", "Label": "LABEL", "Mounts": "MOUNTS", "Networks": "NETWORKS",
              "LocalVolumes": "LOCAL VOLUMES"}
PS_TABLE = "table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}"
PS_FILTERS = ("status", "name", "id", "label", "ancestor", "network", "exited", "before", "since", "volume")
PS_STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def cmd_ps(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    import time

    from pycontain import state
    from pycontain.clifmt import listing, parse_filters

    if pos:
        raise UsageError("ps takes no arguments (use --filter)")
    opts = {"filter": [], "format": None, "last": None, "latest": False, "size": False, "no_trunc": False} | opts
    filters = parse_filters(opts["filter"], PS_FILTERS, "ps")
    for value in filters.get("status", ()):
        if value not in PS_STATES:
            raise UsageError(f"invalid filter 'status={value}' (valid: {', '.join(PS_STATES)})")
    for value in filters.get("exited", ()):
        if not value.lstrip("-").isdigit():
            raise UsageError(f"invalid filter 'exited={value}': expected an exit code")
    last = -1
    if opts["last"] is not None:
        try:
            last = int(opts["last"])
        except ValueError:
            raise UsageError(f"invalid -n {opts['last']!r}: expected a number") from None
    if opts["latest"] and last == -1:
        last = 1
    fmt = opts["format"]
    if fmt is not None:
        from pycontain import gotemplate

        gotemplate.parse(gotemplate.docker_format(fmt))  # a bad template fails before any work
    # Every read of a record happens here, before sorting: an `rm` running beside us may delete any
    # record between the directory listing and its files being read, and that container is simply gone.
    # (The record keeps its config once read: the accessors below read no file again.)
    found = []
    for rec in state.all_records(paths):
        try:
            rec.check_config()
            st = rec.read_state()
            found.append((rec, st, rec.status(st)))
        except state.DamagedRecord as e:
            _error(str(e))  # named on stderr: the listing of the others goes on
        except (OSError, ValueError):
            continue
    found.sort(key=lambda r: r[0].created, reverse=True)
    # Docker: a status filter, or -n/-l, lists stopped containers without -a.
    show_all = opts["all"] or "status" in filters or last > 0
    if filters:
        found = _ps_filter(paths, found, filters)
    if not show_all:
        found = [r for r in found if r[2] in (state.Status.RUNNING, state.Status.PAUSED, state.Status.RESTARTING)]
    if last > 0:
        found = found[:last]
    now = time.time()
    trunc = not opts["no_trunc"]
    rows = [ps_row(rec, st, status, now, trunc) for rec, st, status in found]
    default = PS_TABLE + ("\\t{{.Size}}" if opts["size"] else "")
    listing(fmt, rows, PS_HEADERS, default, opts["quiet"])
    return 0


def ps_state(status: str) -> str:
    """Docker's State word for a status (pycontain's brief `starting` is Docker's `created`)."""
    from pycontain.state import Status

    return str(Status.CREATED) if status == Status.STARTING else str(status)


def _ps_filter(paths: Any, found: list[Any], filters: dict[str, list[str]]) -> list[Any]:
    """Docker's `ps --filter`: the values of one key are ORed, different keys ANDed."""
    import re

    def search(pattern: str, text: str) -> bool:
        try:
            return re.search(pattern, text) is not None
        except re.error:
            raise UsageError(f"invalid filter pattern {pattern!r}: not a regular expression") from None

    def created_of(ref: str) -> str:
        from pycontain import state

        return state.find(paths, ref).created

    ancestors: set[str] = set()
    names: set[str] = set()
    for value in filters.get("ancestor", ()):
        from pycontain.images import reference
        from pycontain.images.store import Store

        try:
            ancestors.add(Store(paths).resolve(value).id)
        except PycontainError:
            pass
        try:
            names.add(reference.parse(value).familiar)
        except PycontainError:
            names.add(value)
    before = [created_of(v) for v in filters.get("before", ())]
    since = [created_of(v) for v in filters.get("since", ())]
    out = []
    for rec, st, status in found:
        if not all(any(_ps_match(key, v, rec, st, status, ancestors, names, search) for v in values)
                   for key, values in filters.items()):
            continue
        if any(rec.created >= b for b in before) or any(rec.created <= s for s in since):
            continue
        out.append((rec, st, status))
    return out


def _ps_match(key: str, v: str, rec: Any, st: ContainerState, status: str, ancestors: set[str], names: set[str],
              search: Any) -> bool:
    """One `--filter key=v` against one container (before/since are applied by the caller)."""
    if key == "status":
        return v == ps_state(status)
    if key == "name":
        return bool(search(v, rec.name))
    if key == "id":
        return bool(search(v, rec.id))
    if key == "label":
        return _label_match(_labels(rec.meta()), v)
    if key == "ancestor":
        return rec.image_id in ancestors or rec.image in names or rec.image.removesuffix(":latest") in names
    if key == "network":
        return v in _ps_networks(rec)
    if key == "volume":
        return any(v in (m.name, m.source, m.target) for m in rec.config.mounts)
    if key in ("before", "since"):
        return True
    from pycontain.state import Status

    # exited=N: it ran and exited with N
    return status == Status.EXITED and st.exit_code == int(v) and bool(st.started_at)


def _labels(meta: dict[str, Any]) -> dict[str, str]:
    """A container's labels (its own, over its image's), from its record."""
    out: dict[str, str] = {}
    for where in (meta.get("resolved") or {}, meta.get("config") or {}):
        labels = where.get("labels") or {}
        if isinstance(labels, (list, tuple)):
            labels = dict(str(x).partition("=")[::2] for x in labels)
        if isinstance(labels, dict):
            out.update({str(k): str(v) for k, v in labels.items()})
    return out


def _label_match(labels: dict[str, str], want: str) -> bool:
    key, eq, value = want.partition("=")
    return key in labels and (not eq or labels[key] == value)


def _ps_networks(rec: Any) -> list[str]:
    net = rec.network or {}
    names = [str(net.get("network") or rec.config.network)]
    names += [str(n) for n in (rec.meta().get("networks") or {}) if str(n) not in names]
    return names


def _go_quote(text: str) -> str:
    """strconv.Quote for a command line (Docker's COMMAND column)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def _ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def ps_row(rec: Any, st: ContainerState, status: Status, now: float, trunc: bool) -> dict[str, Any]:
    """One container as Docker's `ps` placeholders; the costly ones are methods, computed only if used."""
    from pycontain.clifmt import ago, created_at

    command = " ".join(rec.resolved.argv)
    meta = rec.meta()

    def labels() -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(_labels(meta).items()))

    def label(key: str) -> str:
        return _labels(meta).get(key, "")

    def ports() -> str:
        if not rec.network:
            return ""
        from pycontain.network import bridged

        return bridged.ports_text(rec.network)

    def mounts() -> str:
        return ",".join(_ellipsis(m.name or m.source, 15) if trunc else (m.name or m.source)
                        for m in rec.config.mounts if m.name or m.source)

    return {
        "Command": _go_quote(_ellipsis(command, 20) if trunc else command),
        "CreatedAt": lambda: created_at(rec.created),
        "ID": rec.short_id if trunc else rec.id,
        "Image": rec.image,
        "Labels": labels,
        "LocalVolumes": lambda: str(sum(m.kind == "volume" for m in rec.config.mounts)),
        "Mounts": mounts,
        "Names": rec.name,
        "Networks": lambda: ",".join(_ps_networks(rec)),
        "Ports": ports,
        "RunningFor": ago(rec.created, now) + " ago",
        "Size": lambda: _ps_size(rec),
        "State": ps_state(status),
        "Status": _status_text(status, st, now),
        "Label": label,
    }


_image_sizes: dict[str, int] = {}


def _ps_size(rec: Any) -> str:
    """Docker's SIZE: the writable layer's bytes, and with the image's: "12B (virtual 7.8MB)"."""
    from pycontain.clifmt import size

    from pycontain.state import tree_size

    rw = tree_size(f"{rec.storage}/upper")
    if rec.image_id not in _image_sizes:
        from pycontain.images.store import Store

        try:
            store = Store(rec.paths)
            _image_sizes[rec.image_id] = store.image_size(store.config(rec.image_id))
        except PycontainError:
            _image_sizes[rec.image_id] = 0
    virtual = rw + _image_sizes[rec.image_id]
    return f"{size(rw)} (virtual {size(virtual)})" if virtual else size(rw)


def _status_text(status: Status, st: ContainerState, now: float | None = None) -> str:
    """Docker's STATUS words: "Up 3 minutes", "Up 3 minutes (Paused)", "Exited (0) 3 minutes ago", "Created"."""
    from pycontain.clifmt import ago
    from pycontain.state import Status

    # "paused" and "restarting" are spelled out: the pause and restart-policy code may add them to Status
    if status == Status.RUNNING:
        # With a health check, its state after it, as Docker shows it: (healthy), (health: starting)
        health = (st.health or {}).get("status")
        suffix = {"healthy": " (healthy)", "unhealthy": " (unhealthy)", "starting": " (health: starting)"}
        return f"Up {ago(st.started_at or '', now)}{suffix.get(health or '', '')}"
    if status == "paused":
        return f"Up {ago(st.started_at or '', now)} (Paused)"
    if status == Status.EXITED:
        return f"Exited ({st.exit_code}) {ago(st.finished_at or '', now)} ago"
    if status == "restarting":
        return f"Restarting ({st.exit_code}) {ago(st.finished_at or '', now)} ago"
    if status == Status.DEAD:
        return "Dead (run `pycontain gc`)"
    return "Starting" if status == Status.STARTING else "Created"


def cmd_logs(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import state

    need(pos, "a container", exactly=1)
    rec = state.find(paths, pos[0])
    tail = opts["tail"]
    if tail is not None and not (tail.isdigit() or tail == "all"):
        raise UsageError(f"invalid --tail {tail!r}: expected a number of lines")
    from pycontain import logs

    since = logs.parse_time(opts["since"], "--since") if opts.get("since") is not None else None
    until = logs.parse_time(opts["until"], "--until") if opts.get("until") is not None else None
    if getattr(rec.config, "log_driver", "json-file") == "none":
        raise PycontainError(f"container {rec.name} has logging driver none: it keeps no logs to read")
    # Empty if it never ran (or ran --rm in the foreground): nothing was captured.
    data, current = logs.read_all(rec.log_path, rec.config.log_max_files)
    try:
        records = logs.records(data)
        if since is not None or until is not None:
            records = [r for r in records if _in_window(r, since, until)]
        if tail is not None and tail != "all":
            records = records[-int(tail):] if int(tail) else []
        _print_records(records, opts)
    except BaseException:
        if current is not None:
            os.close(current)
        raise
    if not opts["follow"] or (until is not None and until < _now_ns()):
        if current is not None:
            os.close(current)
        return 0

    def running() -> bool:
        return rec.is_locked() and (until is None or _now_ns() <= until)

    for record in logs.follow_records(rec.log_path, running, current):
        if _in_window(record, since, until):
            _print_records([record], opts)
    return 0


def _now_ns() -> int:
    import time

    return time.time_ns()


def _in_window(record: Any, since: int | None, until: int | None) -> bool:
    when = record.time or 0  # a line of an older plain log has no time: before any --since
    return (since is None or when >= since) and (until is None or when <= until)


def _print_records(records: list[Any], opts: dict[str, Any]) -> None:
    """stdout lines to our stdout, stderr lines to our stderr (as Docker's `logs`), in their order."""
    from pycontain import logs

    stamps, details = opts.get("timestamps"), opts.get("details")
    batch: list[bytes] = []
    fd = 1
    for r in records:
        line = r.text
        if details:
            attrs = ",".join(f"{k}={v}" for k, v in sorted((r.attrs or {}).items()))
            line = attrs.encode() + b" " + line
        if stamps and r.time is not None:
            line = logs.format_fixed(r.time).encode() + b" " + line
        want = 2 if r.stream == "stderr" else 1
        if want != fd and batch:
            _write_all(fd, b"".join(batch))
            batch = []
        fd = want
        batch.append(line)
    if batch:
        _write_all(fd, b"".join(batch))


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def cmd_top(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    import time

    import psutil

    from pycontain import state
    from pycontain import cgroups
    from pycontain.clifmt import table

    need(pos, "a container", exactly=1)
    rec = state.find(paths, pos[0])
    if not rec.status().can_exec():
        raise UsageError(f"container {rec.name} is not running")
    rows = []
    for pid in sorted(cgroups.for_container(rec.id).procs()):
        try:
            p = psutil.Process(pid)
            with p.oneshot():
                cpu = p.cpu_times()
                rows.append([p.uids().real, pid, p.ppid(), time.strftime("%H:%M", time.localtime(p.create_time())),
                             f"{int(cpu.user + cpu.system) // 60:02d}:{int(cpu.user + cpu.system) % 60:02d}",
                             " ".join(p.cmdline()) or f"[{p.name()}]"])
        except psutil.Error:
            continue
    table(["UID", "PID", "PPID", "STIME", "TIME", "CMD"], [[str(v) for v in r] for r in rows])
    return 0


def cmd_stop(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import runtime

    need(pos, "a container")
    # Not given: each container's own --stop-timeout (else 10 s), as Docker does.
    timeout = None if opts["time"] is None else seconds_arg(opts["time"], "--time", 10.0)
    signum = parse_signal(opts["signal"]) if opts["signal"] else None
    return each_ref(pos, lambda ref: print(ref) if runtime.stop(paths, ref, timeout, signum) else None)


def cmd_kill(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import runtime

    need(pos, "a container")
    signum = parse_signal(opts["signal"] or "KILL")
    return each_ref(pos, lambda ref: print(ref) if runtime.kill(paths, ref, signum) else None)


def cmd_rm(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import runtime

    need(pos, "a container")
    return each_ref(pos, lambda ref: print(ref) if runtime.remove(paths, ref, opts["force"], opts["volumes"]) else None)


def cmd_wait(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import runtime

    need(pos, "a container")
    return each_ref(pos, lambda ref: print(runtime.wait(paths, ref)))


def cmd_inspect(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    import json

    from pycontain import details

    need(pos, "a container, image, network or volume")
    fmt, kind = opts["format"], opts["type"]
    if kind is not None and kind not in details.KINDS:
        raise UsageError(f"invalid --type {kind!r}: use container, image, network or volume")
    tmpl = None
    if fmt and fmt != "json":
        from pycontain import gotemplate

        tmpl = gotemplate.parse(fmt)  # a bad template fails before anything is looked up
    out, code = [], 0
    for ref in pos:
        try:
            out.append(details.describe(paths, ref, kind))
        except PycontainError as e:
            print(f"pycontain: {e}", file=sys.stderr)
            code = e.exit_code
    if tmpl is None:
        print(json.dumps(out, indent=4))
        return code
    # As Docker's: each object through the template, a newline after each.
    sys.stdout.write("".join(tmpl.execute(obj) + "\n" for obj in out))
    return code


def cmd_gc(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import runtime
    from pycontain.network.nat import NftError

    try:
        lines = runtime.gc(paths)
    except NftError as e:
        # Not a clean bill of health: the DNAT rules of removed containers may still be in place.
        raise NftError(f"gc could not finish: {e}; rules of removed containers may remain, "
                       "run `pycontain gc` again once nft works") from None
    for line in lines:
        print(line)
    return 0


def need(pos: list[str], what: str, exactly: int | None = None) -> None:
    """Insist on positional arguments (exactly that many, if given); for every command module."""
    if not pos or (exactly is not None and len(pos) != exactly):
        raise UsageError(f"expected {what}" + ("" if exactly is None else f" ({exactly} argument(s))"))


def seconds_arg(value: str | None, flag: str, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"invalid {flag} {value!r}: expected a number of seconds") from None
    if number < 0:
        raise UsageError(f"invalid {flag} {value!r}: must not be negative")
    return number


def each_ref(refs: list[str], action: Any) -> int:
    """Docker's way with several containers: do each, report each failure, exit non-zero if any failed."""
    code = 0
    for ref in refs:
        try:
            action(ref)
        except PycontainError as e:
            print(f"pycontain: {e}", file=sys.stderr)
            code = e.exit_code
    return code


HANDLERS = {
    "run": cmd_run, "create": cmd_create, "start": cmd_start, "exec": cmd_exec, "ps": cmd_ps, "logs": cmd_logs,
    "top": cmd_top, "stop": cmd_stop, "kill": cmd_kill, "rm": cmd_rm, "wait": cmd_wait, "inspect": cmd_inspect,
    "gc": cmd_gc, "attach": cmd_attach,
}


def load_plugin(command: str) -> bool:
    """Register the commands of the plugin module that defines `command`; False if none does."""
    import importlib

    for module_name, names in PLUGINS.items():
        if command in names and command not in HANDLERS:
            module = importlib.import_module(module_name)
            COMMANDS.update(module.COMMANDS)
            HANDLERS.update(module.HANDLERS)
            HELP.update(getattr(module, "HELP", {}))
    return command in HANDLERS


def load_all_plugins() -> None:
    for names in PLUGINS.values():
        load_plugin(names[0])


# ---------------------------------------------------------------- entry point

def main(argv: list[str] | None = None) -> int:
    # pycontain is a short-lived command (or a monitor that only waits). The cyclic garbage collector
    # would walk every object, and in a freshly cloned child that means copying every page it touches:
    # measured at 1.8 ms of the container's start on the reference VM. Reference counting suffices.
    gc.disable()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args)
    except PycontainError as e:
        _error(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        _error(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
        return 125
    except Exception as e:  # noqa: BLE001 - the promise is one line, never a traceback
        if os.environ.get("PYCONTAIN_DEBUG"):
            raise
        _error(f"internal error: {type(e).__name__}: {e} (set PYCONTAIN_DEBUG=1 for a traceback)")
        return 125


def entry() -> None:
    """The `pycontain` command: main(), then leave without interpreter finalization (errors.leave)."""
    leave(main())


def _error(message: str) -> None:
    try:
        sys.stderr.write(f"pycontain: {message}\n")
        sys.stderr.flush()
    except OSError:
        pass


def _main(args: list[str]) -> int:
    root = None
    explain_all = False
    while args and args[0].startswith("-"):
        arg = args.pop(0)
        if arg in ("--version", "-v"):
            print(f"pycontain version {__version__}")
            return 0
        if arg in ("--help", "-h"):
            print(usage())
            return 0
        if arg == "--explain":
            explain_all = True
        elif arg == "--root" or arg.startswith("--root="):
            root = arg.partition("=")[2] if "=" in arg else (args.pop(0) if args else "")
            if not root:
                raise UsageError("--root needs a directory")
        else:
            raise UsageError(f"unknown global flag {arg} (see `pycontain --help`)")
    if not args:
        print(usage(), file=sys.stderr)
        return 125
    command = args.pop(0)
    if command == "help":
        topic = None
        if len(args) > 1:  # `help volume create`, `help container ls`
            sub = ALIASES.get(f"{args[0]} {args[1]}", f"{args[0]} {args[1]}")
            topic = sub if sub in COMMANDS or load_plugin(sub) else None
        if topic is None and args and (args[0] in COMMANDS or load_plugin(args[0])):
            topic = args[0]
        print(usage(topic))
        return 0
    if args and not args[0].startswith("-"):
        sub = f"{command} {args[0]}"
        sub = ALIASES.get(sub, sub)
        if sub in COMMANDS or load_plugin(sub):
            command = sub
            args.pop(0)
    if command not in COMMANDS and not load_plugin(command):
        raise UsageError(f"unknown command {command!r} (see `pycontain --help`)")
    if ("--help" in args or (command not in ("run", "create") and "-h" in args)) and \
            (command not in STOP_AT_POSITIONAL or args.index("--help" if "--help" in args else "-h") == 0):
        print(usage(command))
        return 0
    opts, positionals = parse_options(COMMANDS[command][0], args, command)
    if os.geteuid() != 0 and command not in NO_ROOT:
        raise NotRootError("pycontain needs root: run it with sudo")
    if explain_all or opts.get("explain"):
        from pycontain import explain

        explain.enable(os.dup(2))
    from pycontain.state import Paths

    return int(HANDLERS[command](Paths.from_root(root), opts, positionals))
