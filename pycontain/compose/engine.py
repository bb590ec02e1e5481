"""What `pycontain compose` does with a loaded project: containers, networks and volumes of a project, made
to match the model (up), or taken away (down).

Every service replica is an ordinary pycontain container, made the way `pycontain create` makes one: the
service is written as `create` arguments and goes through the same parser and checks (so a port, a mount
or a limit means in a compose file exactly what it means on the command line), then through the same
runtime in this process (no `pycontain` child per container). Compose's own facts live in labels, as
Docker Compose keeps them, so `ps --filter label=...` finds them and nothing else needs storing:

    com.docker.compose.project           the project's name
    com.docker.compose.service           the service
    com.docker.compose.container-number  1..N (the replica)
    com.docker.compose.oneoff            True for `compose run` containers
    com.docker.compose.config-hash       digest of the service's model and image id: what `up` compares

Containers are named PROJECT-SERVICE-N (or `container_name`), networks and volumes PROJECT_NAME unless the
file names them. Each replica joins each of its networks with the service's name as an alias, which the
network's DNS resolver answers with every running replica.
"""

from __future__ import annotations

import os
import sys
import time

from pycontain import state
from pycontain.compose import model
from pycontain.compose.model import ComposeError
from pycontain.errors import PycontainError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from pycontain.state import Paths, Record

PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
NUMBER = "com.docker.compose.container-number"
ONEOFF = "com.docker.compose.oneoff"
HASH = "com.docker.compose.config-hash"
WORKDIR = "com.docker.compose.project.working_dir"
FILES = "com.docker.compose.project.config_files"
NETWORK = "com.docker.compose.network"
VOLUME = "com.docker.compose.volume"
POLL = 0.02  # seconds between looks at a dependency's state


def say(text: str) -> None:
    """Progress, as Docker Compose prints it: on stderr, so stdout stays for what a command outputs."""
    try:
        sys.stderr.write(f"{text}\n")
        sys.stderr.flush()
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------- finding

def labels_of(rec: Record) -> dict[str, str]:
    labels = rec.config.labels
    return labels if isinstance(labels, dict) else {}


def containers(paths: Paths, project: str, services: Iterable[str] | None = None, oneoff: bool | None = False,
               include_stopped: bool = True) -> list[Record]:
    """The project's containers (of those services), by service then number; oneoff None: both kinds."""
    wanted = set(services) if services is not None else None
    out = []
    for rec in state.all_records(paths):
        try:
            labels = labels_of(rec)
            if labels.get(PROJECT) != project:
                continue
            if wanted is not None and labels.get(SERVICE) not in wanted:
                continue
            if oneoff is not None and (labels.get(ONEOFF) == "True") != oneoff:
                continue
            if not include_stopped and not rec.status().can_exec():
                continue
        except (OSError, ValueError):
            continue  # removed meanwhile, or damaged: not one of ours to act on
        out.append(rec)
    out.sort(key=lambda r: (labels_of(r).get(SERVICE, ""), number(r), r.name))
    return out


def number(rec: Record) -> int:
    n = labels_of(rec).get(NUMBER, "")
    return int(n) if n.isdigit() else 0


def projects(paths: Paths) -> dict[str, list[Record]]:
    """Every project that has a container here: name -> its containers (`compose ls`)."""
    out: dict[str, list[Record]] = {}
    for rec in state.all_records(paths):
        try:
            name = labels_of(rec).get(PROJECT)
        except (OSError, ValueError):
            continue
        if name:
            out.setdefault(name, []).append(rec)
    return out


def from_labels(paths: Paths, name: str) -> model.Project:
    """A project whose file is not at hand (`compose -p NAME down`), as its labels describe it: the
    services its containers belong to, the networks and volumes made for it."""
    from pathlib import Path

    from pycontain import volumes
    from pycontain.network import ipam

    services: dict[str, Any] = {}
    for rec in containers(paths, name, oneoff=None):
        services.setdefault(labels_of(rec).get(SERVICE, ""), {})
    networks: dict[str, Any] = {}
    for net in ipam.names(paths):
        labels = ipam.load(paths, net).get("labels") or {}
        if labels.get(PROJECT) == name:
            networks[str(labels.get(NETWORK) or net)] = {"name": net}
    vols: dict[str, Any] = {}
    for vol in volumes.names(paths):
        labels = (volumes.read(paths, vol) or {}).get("labels") or {}
        if labels.get(PROJECT) == name:
            vols[str(labels.get(VOLUME) or vol)] = {"name": vol}
    return model.Project(name, Path("."), [], services, networks, vols)


def active(project: model.Project, profiles: list[str], named: list[str] | None = None) -> list[str]:
    """Services in force: those without profiles, those with an enabled profile, and any named on the
    command line (naming a service enables it, as in Compose)."""
    enabled = set(profiles) | set(filter(None, os.environ.get("COMPOSE_PROFILES", "").split(",")))
    out = []
    for name, svc in project.services.items():
        wanted = svc.get("profiles")
        if not wanted or "*" in enabled or enabled & set(wanted) or (named and name in named):
            out.append(name)
    for name in named or []:
        if name not in project.services:
            raise ComposeError(f"no such service: {name}")
    return out


def image_name(project: model.Project, service: str) -> str:
    """The image a service runs: its `image`, else the one `build` makes, named PROJECT-SERVICE."""
    svc = project.services[service]
    return str(svc.get("image") or f"{project.name}-{service}")


def container_name(project: model.Project, service: str, number: int) -> str:
    svc = project.services[service]
    return str(svc.get("container_name") or f"{project.name}-{service}-{number}")


def replicas(project: model.Project, service: str, scale: dict[str, int]) -> int:
    if service in scale:
        return scale[service]
    svc = project.services[service]
    return int((svc.get("deploy") or {}).get("replicas", svc.get("scale", 1)))


# --------------------------------------------------------------------------------------- service -> create

def _env(project: model.Project, svc: dict[str, Any]) -> list[str]:
    """env_file files in order, then `environment` over them; a key with no value takes the shell's (or
    .env's) value, and is left out if there is none, as Compose does."""
    out: dict[str, str] = {}
    for item in svc.get("env_file") or []:
        path = item["path"]
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            if item.get("required", True):
                raise ComposeError(f"env file {path} not found") from None
            continue
        except (OSError, UnicodeDecodeError) as e:
            raise ComposeError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
        out.update(model.parse_env_file(text, path))
    for key, value in (svc.get("environment") or {}).items():
        if value is None:
            if key in project.env:
                out[key] = project.env[key]
            else:
                out.pop(key, None)
        else:
            out[key] = str(value)
    return [f"{k}={v}" for k, v in out.items()]


def _mount(project: model.Project, m: dict[str, Any]) -> list[str]:
    kind, target = m["type"], m["target"]
    if "," in target or "," in str(m.get("source", "")):
        raise ComposeError(f"volume {m.get('source', '')}:{target}: a comma in a mount path is not supported")
    if kind == "bind":
        source = m["source"]
        if not os.path.exists(source):
            if not (m.get("bind") or {}).get("create_host_path"):
                raise ComposeError(f"bind source {source} does not exist")
            os.makedirs(source, exist_ok=True)
        spec = f"type=bind,source={source},target={target}"
    elif kind == "volume":
        if "source" in m:
            spec = f"type=volume,source={project.volumes[m['source']]['name']},target={target}"
        else:
            spec = f"type=volume,target={target}"
        if (m.get("volume") or {}).get("nocopy"):
            spec += ",volume-nocopy"
    else:
        spec = f"type=tmpfs,target={target}"
        if (m.get("tmpfs") or {}).get("size"):
            spec += f",tmpfs-size={m['tmpfs']['size']}"
    if m.get("read_only"):
        spec += ",readonly"
    return ["--mount", spec]


def _port(p: dict[str, Any]) -> str:
    host = f"{p['host_ip']}:" if p.get("host_ip") else ""
    published = p.get("published")
    if published:
        return f"{host}{published}:{p['target']}/{p['protocol']}"
    return f"{host}:{p['target']}/{p['protocol']}" if host else f"{p['target']}/{p['protocol']}"


def _namespace_of(project: model.Project, mode: str) -> str:
    """network_mode/ipc/pid "service:NAME" is that service's first container; the rest as given."""
    if mode.startswith("service:"):
        return "container:" + container_name(project, mode.removeprefix("service:"), 1)
    return mode


def networks_of(project: model.Project, svc: dict[str, Any]) -> list[tuple[str, list[str], str | None]]:
    """(network's real name, aliases, ipv4_address) of each network the service joins, the first being
    its eth0: by name, as Compose orders them when no priority is given."""
    out = []
    for key in sorted(svc.get("networks") or {}):
        entry = (svc["networks"] or {}).get(key) or {}
        out.append((str(project.networks[key]["name"]), list(entry.get("aliases") or []), entry.get("ipv4_address")))
    return out


def create_args(project: model.Project, service: str, name: str, labels: dict[str, str],
                publish: bool = True) -> list[str]:
    """The service as `pycontain create` options (the image and command are added by the caller)."""
    svc = project.services[service]
    argv = ["--name", name, "--pull", "never"]
    for item in _env(project, svc):
        argv += ["-e", item]
    for key, value in {**{k: "" if v is None else str(v) for k, v in (svc.get("labels") or {}).items()},
                       **labels}.items():
        argv += ["--label", f"{key}={value}"]
    if publish:
        for p in svc.get("ports") or []:
            argv += ["-p", _port(p)]
    for e in svc.get("expose") or []:
        argv += ["--expose", e]
    for m in svc.get("volumes") or []:
        argv += _mount(project, m)
    mode = svc.get("network_mode")
    if mode is not None:
        argv += ["--network", _namespace_of(project, mode) if mode != "bridge" else "bridge"]
    for key in ("ipc", "pid", "uts"):
        if svc.get(key) is not None:
            argv += [f"--{key}", _namespace_of(project, svc[key])]
    for ref in svc.get("volumes_from") or []:
        if ref.startswith("container:"):
            argv += ["--volumes-from", ref.removeprefix("container:")]
        else:
            other, _, how = ref.partition(":")
            argv += ["--volumes-from", container_name(project, other, 1) + (f":{how}" if how else "")]
    nets = networks_of(project, svc)
    if nets:
        net, aliases, ip = nets[0]
        argv += ["--network", net]
        for alias in dict.fromkeys([service, *aliases]):
            argv += ["--network-alias", alias]
        if ip:
            argv += ["--ip", ip]
    simple = {"user": "--user", "working_dir": "--workdir", "hostname": "--hostname", "restart": "--restart",
              "stop_signal": "--stop-signal"}
    for key, flag in simple.items():
        if svc.get(key) is not None:
            argv += [flag, str(svc[key])]
    simple = {"mac_address": "--mac-address", "platform": "--platform", "runtime": "--runtime",
              "cpuset": "--cpuset-cpus", "mem_limit": "--memory", "memswap_limit": "--memory-swap",
              "mem_reservation": "--memory-reservation", "shm_size": "--shm-size", "pids_limit": "--pids-limit",
              "cpu_shares": "--cpu-shares", "cpus": "--cpus", "mem_swappiness": "--memory-swappiness",
              "cpu_period": "--cpu-period", "cpu_quota": "--cpu-quota"}
    for key, flag in simple.items():
        if svc.get(key) is not None:
            argv += [flag, str(svc[key])]
    for key, flag in {"read_only": "--read-only", "init": "--init", "tty": "--tty", "stdin_open": "--interactive",
                      "privileged": "--privileged", "oom_kill_disable": "--oom-kill-disable"}.items():
        if svc.get(key):
            argv.append(flag)
    for key, flag in {"cap_add": "--cap-add", "cap_drop": "--cap-drop", "security_opt": "--security-opt",
                      "dns": "--dns", "tmpfs": "--tmpfs", "dns_search": "--dns-search", "dns_opt": "--dns-option",
                      "devices": "--device", "group_add": "--group-add"}.items():
        for value in svc.get(key) or []:
            argv += [flag, value]
    for item in svc.get("extra_hosts") or []:
        host, _, ip = item.partition("=")
        argv += ["--add-host", f"{host}:{ip}"]
    for key, value in (svc.get("sysctls") or {}).items():
        argv += ["--sysctl", f"{key}={'' if value is None else value}"]
    for key, value in (svc.get("ulimits") or {}).items():
        argv += ["--ulimit", f"{key}={value['soft']}:{value['hard']}" if isinstance(value, dict) else f"{key}={value}"]
    if svc.get("stop_grace_period") is not None:
        from pycontain.config import parse_duration

        ns = parse_duration(svc["stop_grace_period"], "stop_grace_period")
        argv += ["--stop-timeout", str(-(-ns // 1_000_000_000))]
    logging = svc.get("logging") or {}
    if logging.get("driver"):
        argv += ["--log-driver", "json-file" if logging["driver"] == "local" else logging["driver"]]
    for key, value in (logging.get("options") or {}).items():
        argv += ["--log-opt", f"{key}={value}"]
    limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    if "cpus" in limits:
        argv += ["--cpus", str(limits["cpus"])]
    if "memory" in limits:
        argv += ["--memory", str(limits["memory"])]
    if "pids" in limits:
        argv += ["--pids-limit", str(limits["pids"])]
    return argv


def healthcheck(svc: dict[str, Any]) -> dict[str, Any] | None:
    """The service's healthcheck in the image config's shape (durations in ns), merged over the image's
    at create as the --health-* flags are."""
    hc = svc.get("healthcheck")
    if hc is None:
        return None
    if hc.get("disable"):
        return {"Test": ["NONE"]}
    from pycontain.config import parse_duration

    out: dict[str, Any] = {}
    if "test" in hc:
        out["Test"] = list(hc["test"])
    for key, field in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod"),
                       ("start_interval", "StartInterval")):
        if key in hc:
            out[field] = parse_duration(hc[key], f"healthcheck.{key}")
    if "retries" in hc:
        out["Retries"] = hc["retries"]
    return out or None


def config_for(paths: Paths, project: model.Project, service: str, name: str, labels: dict[str, str],
               command: list[str] | None = None, publish: bool = True, extra: list[str] | None = None) -> Any:
    """The ContainerConfig of one replica (or one-off container): `create`'s own parser and checks."""
    from pycontain import cli

    svc = project.services[service]
    argv = create_args(project, service, name, labels, publish) + list(extra or [])
    opts, _ = cli.parse_options(cli.COMMANDS["create"][0], argv, "create")
    opts["detach"] = True
    cmd = list(svc.get("command") or []) if command is None else command
    cfg = cli.config_from(opts, [image_name(project, service), *cmd])
    changes: dict[str, Any] = {}
    if svc.get("entrypoint") is not None:
        changes["entrypoint"] = tuple(svc["entrypoint"])
    hc = healthcheck(svc)
    if hc is not None:
        changes["healthcheck"] = hc
    return cfg.replace(**changes) if changes else cfg


def config_hash(project: model.Project, service: str, image_id: str) -> str:
    """What `up` compares to decide whether a replica is still what the file asks for: the service's model
    (after interpolation, normal forms), the image it would run, and the networks and volumes it uses."""
    import hashlib
    import json

    svc = project.services[service]
    uses = {"networks": {k: project.networks[k] for k in svc.get("networks") or {}},
            "volumes": {m["source"]: project.volumes[m["source"]] for m in svc.get("volumes") or []
                        if m["type"] == "volume" and "source" in m}}
    body = json.dumps({"service": svc, "image": image_id, "uses": uses}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def base_labels(project: model.Project, service: str, number: int, oneoff: bool = False) -> dict[str, str]:
    return {PROJECT: project.name, SERVICE: service, NUMBER: str(number), ONEOFF: str(oneoff),
            WORKDIR: str(project.directory), FILES: ",".join(os.path.abspath(f) for f in project.files)}


# ------------------------------------------------------------------------------------ networks and volumes

def ensure_resources(paths: Paths, project: model.Project, services: list[str]) -> None:
    """The networks and named volumes those services use, made if missing (external ones must exist)."""
    from pycontain import volumes
    from pycontain.network import ipam

    net_keys = sorted({k for s in services for k in project.services[s].get("networks") or {}})
    for key in net_keys:
        body = project.networks[key]
        name = str(body["name"])
        try:
            ipam.load(paths, name)
            continue
        except ipam.NetworkNotFound:
            if body.get("external"):
                raise ComposeError(f"network {name} declared as external, but could not be found") from None
        subnet = next((c.get("subnet") for c in (body.get("ipam") or {}).get("config") or [] if c.get("subnet")),
                      None)
        labels = {**{k: "" if v is None else str(v) for k, v in (body.get("labels") or {}).items()},
                  PROJECT: project.name, NETWORK: key}
        try:
            ipam.create(paths, name, subnet, internal=bool(body.get("internal")), labels=labels)
        except UsageError as e:
            if "already exists" not in str(e):  # made by a concurrent `up` meanwhile: fine
                raise
        say(f"Network {name}  Created")
    vol_keys = sorted({m["source"] for s in services for m in project.services[s].get("volumes") or []
                       if m["type"] == "volume" and "source" in m})
    for key in vol_keys:
        body = project.volumes[key]
        name = str(body["name"])
        if volumes.read(paths, name) is not None:
            continue
        if body.get("external"):
            raise ComposeError(f"volume {name} declared as external, but could not be found")
        labels = {**{k: "" if v is None else str(v) for k, v in (body.get("labels") or {}).items()},
                  PROJECT: project.name, VOLUME: key}
        fd = volumes.lock(paths)
        try:
            volumes.ensure(paths, name, labels=labels)
        finally:
            os.close(fd)
        say(f"Volume {name}  Created")


def remove_networks(paths: Paths, project: model.Project) -> None:
    from pycontain.network import commands, ipam

    for body in (b for _, b in sorted(project.networks.items())):
        if body.get("external"):
            continue
        name = str(body["name"])
        try:
            info = ipam.load(paths, name)
        except ipam.NetworkNotFound:
            continue
        if (info.get("labels") or {}).get(PROJECT, project.name) != project.name:
            continue  # another project's network of that name: not ours to remove
        try:
            commands.remove(paths, name)  # the bridge, its rules and its resolver too
        except PycontainError as e:
            say(f"Network {name}  Error: {e}")
            continue
        say(f"Network {name}  Removed")


def remove_volumes(paths: Paths, project: model.Project) -> None:
    from pycontain import volumes

    for body in (b for _, b in sorted(project.volumes.items())):
        if body.get("external"):
            continue
        name = str(body["name"])
        vol = volumes.read(paths, name)
        if vol is None:
            continue
        if (vol.get("labels") or {}).get(PROJECT, project.name) != project.name:
            continue
        fd = volumes.lock(paths)
        try:
            users = volumes.users(paths).get(name)
            if users:
                raise PycontainError(f"volume is in use by {', '.join(r.name for r in users)}")
            volumes.delete(paths, name)
        except PycontainError as e:
            say(f"Volume {name}  Error: {e}")
            continue
        finally:
            os.close(fd)
        say(f"Volume {name}  Removed")


# ------------------------------------------------------------------------------------------------ images

def image_id(paths: Paths, ref: str) -> str | None:
    from pycontain.images.store import Store

    try:
        return str(Store(paths).resolve(ref).id)
    except PycontainError:
        return None


def build_service(paths: Paths, project: model.Project, service: str, no_cache: bool = False,
                  pull: bool = False, quiet: bool = False) -> None:
    """`pycontain build` of a service's `build` section, tagged with its image name."""
    from pycontain import cli
    from pycontain.build import commands

    b = project.services[service]["build"]
    context = b["context"]
    dockerfile = b.get("dockerfile", "Dockerfile")
    argv = ["-t", image_name(project, service), "-f",
            dockerfile if os.path.isabs(dockerfile) else os.path.join(context, dockerfile)]
    for key, value in (b.get("args") or {}).items():
        if value is None:
            if key not in project.env:
                continue
            value = project.env[key]
        argv += ["--build-arg", f"{key}={value}"]
    for key, value in (b.get("labels") or {}).items():
        argv += ["--label", f"{key}={'' if value is None else value}"]
    if b.get("target"):
        argv += ["--target", b["target"]]
    if no_cache:
        argv.append("--no-cache")
    if pull:
        argv.append("--pull")
    if quiet:
        argv.append("-q")
    say(f"Service {service}  Building")
    opts, pos = cli.parse_options(commands.COMMANDS["build"][0], [*argv, context], "build")
    with stdout_to_stderr(quiet):
        code = commands.cmd_build(paths, opts, pos)
    if code:
        raise PycontainError(f"service {service}: build failed")
    say(f"Service {service}  Built")


class stdout_to_stderr:
    """The builder's progress goes to stderr during `up --build`, as Compose's does (stdout stays clean)."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.saved = -1

    def __enter__(self) -> None:
        if not self.keep:
            sys.stdout.flush()
            self.saved = os.dup(1)
            os.dup2(2, 1)

    def __exit__(self, *exc: object) -> None:
        if self.saved >= 0:
            sys.stdout.flush()
            os.dup2(self.saved, 1)
            os.close(self.saved)


def pull_image(paths: Paths, ref: str) -> None:
    from pycontain import cli
    from pycontain.images import commands

    opts, pos = cli.parse_options(commands.COMMANDS["pull"][0], ["-q", ref], "pull")
    with stdout_to_stderr(False):
        code = commands.cmd_pull(paths, opts, pos)
    if code:
        raise PycontainError(f"pulling {ref} failed")


def ensure_images(paths: Paths, project: model.Project, services: list[str], build: bool | None,
                  policy: str | None = None) -> dict[str, str]:
    """Each service's image id, building (`up --build`, or a missing image with a build section unless
    --no-build) or pulling (a missing image, unless PYCONTAIN_PULL=never) as needed."""
    out: dict[str, str] = {}
    pull = policy or os.environ.get("PYCONTAIN_PULL") or "missing"
    for service in services:
        svc = project.services[service]
        ref = image_name(project, service)
        found = image_id(paths, ref)
        own = svc.get("pull_policy")
        if own == "build" and build is not False:
            build = True
        if "build" in svc and (build or (found is None and build is not False)):
            build_service(paths, project, service)
            found = image_id(paths, ref)
        elif found is None or (policy or own) == "always" or (pull == "always" and own is None):
            if "build" in svc and found is None:
                raise ComposeError(f"service {service}: image {ref} is not built (run `compose build`, or drop "
                                   "--no-build)")
            if pull == "never" or own == "never":
                raise ComposeError(f"service {service}: image {ref} is not here and pulling is off "
                                   "(PYCONTAIN_PULL=never)")
            say(f"Service {service}  Pulling")
            pull_image(paths, ref)
            found = image_id(paths, ref)
        if found is None:
            raise ComposeError(f"service {service}: no image {ref}")
        out[service] = found
    return out


# ------------------------------------------------------------------------------------- one container

def create_container(paths: Paths, project: model.Project, service: str, number: int, image: str,
                     start: bool = True) -> Record:
    """Make one replica (and start it): created, joined to its other networks, handed to a monitor."""
    from pycontain import runtime

    name = container_name(project, service, number)
    labels = {**base_labels(project, service, number), HASH: config_hash(project, service, image)}
    cfg = config_for(paths, project, service, name, labels)
    rec, lock_fd = runtime.create(paths, cfg, starting=start)
    try:
        connect_extras(paths, project, service, rec)
    except BaseException:
        os.close(lock_fd)
        _force_remove(paths, rec.id)
        raise
    if not start:
        os.close(lock_fd)
        say(f"Container {name}  Created")
        return rec
    runtime.start_detached(rec, lock_fd)
    say(f"Container {name}  Started")
    return rec


def connect_extras(paths: Paths, project: model.Project, service: str, rec: Record) -> None:
    """The service's networks after the first: joined before it starts (attached with eth0 at start)."""
    from pycontain.network import connect

    for net, aliases, ip in networks_of(project, project.services[service])[1:]:
        connect.connect(paths, rec, net, ip=ip, aliases=list(dict.fromkeys([service, *aliases])))


def _force_remove(paths: Paths, cid: str) -> None:
    from pycontain import runtime

    try:
        runtime.remove(paths, cid, force=True, volumes=True)
    except PycontainError:
        pass


def running(rec: Record) -> bool:
    try:
        return bool(rec.status().can_exec())
    except (OSError, ValueError):
        return False


def stop_all(paths: Paths, recs: list[Record], timeout: float | None, verb: str = "Stopped",
             action: Callable[[Record], Any] | None = None) -> list[str]:
    """Stop (or do `action` to) containers at once, one thread each: stopping waits on each container's
    grace period, and Compose stops a level of services in parallel too. Returns the errors."""
    import threading

    from pycontain import runtime

    errors: list[str] = []

    def one(rec: Record) -> None:
        try:
            if action is not None:
                action(rec)
            else:
                if not running(rec):
                    return
                runtime.stop(paths, rec.id, timeout)
            say(f"Container {rec.name}  {verb}")
        except PycontainError as e:
            errors.append(f"{rec.name}: {e}")

    if len(recs) == 1:
        one(recs[0])
        return errors
    threads = [threading.Thread(target=one, args=(r,), daemon=True) for r in recs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def levels(project: model.Project, services: list[str]) -> list[list[str]]:
    """Services grouped so that every service comes after what it depends on: level 0 depends on
    nothing (of these), level 1 only on level 0, ... (stopping goes through them in reverse)."""
    depth: dict[str, int] = {}

    def level(name: str) -> int:
        if name not in depth:
            deps = [d for d in project.services.get(name, {}).get("depends_on", {}) if d in project.services]
            depth[name] = 1 + max((level(d) for d in deps), default=-1)
        return depth[name]

    out: dict[int, list[str]] = {}
    for s in services:
        out.setdefault(level(s) if s in project.services else 0, []).append(s)
    return [out[k] for k in sorted(out)]


# ---------------------------------------------------------------------------------------- conditions

def wait_for(paths: Paths, project: model.Project, service: str, condition: str, deadline: float | None) -> None:
    """Block until every container of `service` meets a depends_on condition; one clear error if it
    cannot (it stopped, it is unhealthy, it failed)."""
    while True:
        recs = containers(paths, project.name, [service])
        if not recs:
            raise ComposeError(f"dependency {service} has no container")
        pending = False
        for rec in recs:
            st = rec.read_state()
            status = rec.status(st)
            if condition == "service_completed_successfully":
                if status.can_exec() or status in ("starting", "created", "restarting"):
                    pending = True
                elif st.exit_code != 0:
                    raise ComposeError(f"service {service} didn't complete successfully: exit {st.exit_code}")
            elif condition == "service_healthy":
                health = (st.health or {}).get("status")
                if not status.can_exec():
                    raise ComposeError(f"dependency failed to start: container {rec.name} is {status}")
                if rec.config.healthcheck is None or rec.config.healthcheck.get("Test") == ["NONE"]:
                    raise ComposeError(f"dependency failed to start: container {rec.name} has no healthcheck "
                                       "configured")
                if health == "unhealthy":
                    raise ComposeError(f"dependency failed to start: container {rec.name} is unhealthy")
                if health != "healthy":
                    pending = True
            elif not status.can_exec() and status != "exited":
                pending = True
        if not pending:
            return
        if deadline is not None and time.monotonic() > deadline:
            raise ComposeError(f"timed out waiting for service {service} ({condition})")
        time.sleep(POLL)


def wait_dependencies(paths: Paths, project: model.Project, service: str, act: list[str],
                      deadline: float | None = None) -> None:
    for dep, cond in sorted(project.services[service].get("depends_on", {}).items()):
        if dep not in act:
            if cond.get("required", True):
                raise ComposeError(f"service {service} depends on {dep}, which is not enabled (profiles)")
            continue
        waiting = cond["condition"] != "service_started"
        if waiting:
            for rec in containers(paths, project.name, [dep]):
                say(f"Container {rec.name}  Waiting")
        wait_for(paths, project, dep, cond["condition"], deadline)
        if waiting:
            done = "Healthy" if cond["condition"] == "service_healthy" else "Exited"
            for rec in containers(paths, project.name, [dep]):
                say(f"Container {rec.name}  {done}")
