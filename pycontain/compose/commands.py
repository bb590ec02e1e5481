"""`pycontain compose [-f FILE]... [-p NAME] [--env-file F]... [--profile P]... COMMAND ...`: loaded only when
used (cli.PLUGINS). The global options end at the subcommand; each subcommand has its own table of options
and goes through the CLI's own parser. What the commands do to containers is in engine.py."""

from __future__ import annotations

import os
import sys
import time

from pycontain.cli import FLAG, MULTI, VALUE, parse_options, seconds_arg
from pycontain.compose import engine, model
from pycontain.compose.model import ComposeError
from pycontain.errors import PycontainError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pycontain.state import Paths, Record

GLOBAL = [
    (("-f", "--file"), "file", MULTI, "FILE", "a compose file (several merge in order; default: compose.yaml ...)"),
    (("-p", "--project-name"), "project_name", VALUE, "NAME", "the project's name (default: name:, or the directory)"),
    (("--env-file",), "env_file", MULTI, "FILE", "variables for interpolation (default: .env)"),
    (("--profile",), "profile", MULTI, "NAME", "enable the services of a profile"),
    (("--project-directory",), "project_directory", VALUE, "DIR", "the project's directory (default: the file's)"),
    (("-h", "--help"), "help", FLAG, "", "this help"),
]
TIMEOUT = (("-t", "--timeout"), "timeout", VALUE, "SECONDS", "seconds to wait for a stop before SIGKILL")
FORMAT = (("--format",), "format", VALUE, "FORMAT", "table, json, or a Go template")
QUIET = (("-q", "--quiet"), "quiet", FLAG, "", "only ids")

SUB: dict[str, tuple[list[Any], str, str]] = {
    "up": ([(("-d", "--detach"), "detach", FLAG, "", "start in the background"),
            (("--build",), "build", FLAG, "", "build images before starting"),
            (("--no-build",), "no_build", FLAG, "", "never build a missing image"),
            (("--force-recreate",), "force_recreate", FLAG, "", "recreate containers even if unchanged"),
            (("--no-recreate",), "no_recreate", FLAG, "", "keep existing containers even if changed"),
            (("--remove-orphans",), "remove_orphans", FLAG, "", "remove containers of services no longer in the file"),
            (("--scale",), "scale", MULTI, "SERVICE=N", "run N replicas of a service"),
            (("--wait",), "wait", FLAG, "", "wait until every service is running or healthy (implies -d)"),
            (("--wait-timeout",), "wait_timeout", VALUE, "SECONDS", "give up --wait after this long"),
            (("--no-deps",), "no_deps", FLAG, "", "do not start the services' dependencies"),
            (("--pull",), "pull", VALUE, "POLICY", "missing (default), always or never"),
            (("--no-start",), "no_start", FLAG, "", "create the containers, do not start them"),
            TIMEOUT],
           "[SERVICE...]", "create and start the project's containers (leaving unchanged ones alone)"),
    "down": ([(("-v", "--volumes"), "volumes", FLAG, "", "also remove named volumes and anonymous ones"),
              (("--rmi",), "rmi", VALUE, "local|all", "also remove images: those built here, or all"),
              (("--remove-orphans",), "remove_orphans", FLAG, "", "also remove containers of services not in the file"),
              TIMEOUT],
             "", "stop and remove the project's containers and networks"),
    "ps": ([(("-a", "--all"), "all", FLAG, "", "stopped containers too"), QUIET, FORMAT,
            (("--services",), "services", FLAG, "", "only the service names"),
            (("--status",), "status", MULTI, "STATUS", "only containers in that state (running, exited ...)")],
           "[SERVICE...]", "list the project's containers"),
    "logs": ([(("-f", "--follow"), "follow", FLAG, "", "keep printing new output"),
              (("--tail", "-n"), "tail", VALUE, "N", "the last N lines of each container"),
              (("-t", "--timestamps"), "timestamps", FLAG, "", "show each line's time"),
              (("--no-color",), "no_color", FLAG, "", "no colours"),
              (("--no-log-prefix",), "no_log_prefix", FLAG, "", "no container name before each line"),
              (("--index",), "index", VALUE, "N", "only replica N")],
             "[SERVICE...]", "show the output of the project's containers"),
    "exec": ([(("-T", "--no-TTY"), "no_tty", FLAG, "", "no terminal (default: one if this is a terminal)"),
              (("-d", "--detach"), "detach", FLAG, "", "run the command in the background"),
              (("-e", "--env"), "env", MULTI, "K=V", "set an environment variable"),
              (("-u", "--user"), "user", VALUE, "USER", "run as this user"),
              (("-w", "--workdir"), "workdir", VALUE, "DIR", "working directory"),
              (("--index",), "index", VALUE, "N", "which replica (default 1)"),
              (("--privileged",), "privileged", FLAG, "", "every capability for the command")],
             "SERVICE COMMAND [ARG...]", "run a command in a service's running container"),
    "run": ([(("--rm",), "rm", FLAG, "", "remove the container when it exits"),
             (("-d", "--detach"), "detach", FLAG, "", "run in the background, print the container's name"),
             (("-e", "--env"), "env", MULTI, "K=V", "set an environment variable"),
             (("-T", "--no-TTY"), "no_tty", FLAG, "", "no terminal"),
             (("--name",), "name", VALUE, "NAME", "the container's name"),
             (("--entrypoint",), "entrypoint", VALUE, "CMD", "override the entrypoint"),
             (("-u", "--user"), "user", VALUE, "USER", "run as this user"),
             (("-w", "--workdir"), "workdir", VALUE, "DIR", "working directory"),
             (("--no-deps",), "no_deps", FLAG, "", "do not start the service's dependencies"),
             (("-P", "--service-ports"), "service_ports", FLAG, "", "publish the service's ports"),
             (("-l", "--label"), "label", MULTI, "K=V", "add a label"),
             (("--build",), "build", FLAG, "", "build the image first")],
            "SERVICE [COMMAND [ARG...]]", "run a one-off command in a new container of a service"),
    "build": ([(("--no-cache",), "no_cache", FLAG, "", "do not use cached steps"),
               (("--pull",), "pull", FLAG, "", "pull base images again"),
               (("-q", "--quiet"), "quiet", FLAG, "", "no build output")],
              "[SERVICE...]", "build the services' images"),
    "pull": ([(("-q", "--quiet"), "quiet", FLAG, "", "no progress"),
              (("--ignore-buildable",), "ignore_buildable", FLAG, "", "skip services that have a build section")],
             "[SERVICE...]", "pull the services' images"),
    "push": ([(("-q", "--quiet"), "quiet", FLAG, "", "no progress")], "[SERVICE...]", "push the services' images"),
    "config": ([(("--services",), "services", FLAG, "", "only the service names"),
                (("--volumes",), "volumes", FLAG, "", "only the volume names"),
                (("--networks",), "networks", FLAG, "", "only the network names"),
                (("--images",), "images", FLAG, "", "only the image names"),
                (("-q", "--quiet"), "quiet", FLAG, "", "only check the files"),
                (("--format",), "format", VALUE, "yaml|json", "output format (default yaml)"),
                (("-o", "--output"), "output", VALUE, "FILE", "write to FILE")],
               "[SERVICE...]", "check the files and print the resolved model, normalised"),
    "start": ([], "[SERVICE...]", "start the services' stopped containers"),
    "stop": ([TIMEOUT], "[SERVICE...]", "stop the services' containers"),
    "restart": ([TIMEOUT, (("--no-deps",), "no_deps", FLAG, "", "ignored: dependencies are not restarted")],
                "[SERVICE...]", "restart the services' containers"),
    "kill": ([(("-s", "--signal"), "signal", VALUE, "SIGNAL", "the signal (default SIGKILL)"),
              (("--remove-orphans",), "remove_orphans", FLAG, "", "also orphans")],
             "[SERVICE...]", "send a signal to the services' containers"),
    "rm": ([(("-f", "--force"), "force", FLAG, "", "do not ask"),
            (("-s", "--stop"), "stop", FLAG, "", "stop running containers first"),
            (("-v", "--volumes"), "volumes", FLAG, "", "also their anonymous volumes")],
           "[SERVICE...]", "remove the services' stopped containers"),
    "top": ([], "[SERVICE...]", "show the processes of the services' containers"),
    "port": ([(("--protocol",), "protocol", VALUE, "tcp|udp", "the port's protocol (default tcp)"),
              (("--index",), "index", VALUE, "N", "which replica (default 1)")],
             "SERVICE PRIVATE_PORT", "print the host address a service's port is published on"),
    "images": ([QUIET, FORMAT], "[SERVICE...]", "list the images the project's containers use"),
    "ls": ([(("-a", "--all"), "all", FLAG, "", "projects with only stopped containers too"), QUIET, FORMAT],
           "", "list projects"),
    "pause": ([], "[SERVICE...]", "pause the services' containers"),
    "unpause": ([], "[SERVICE...]", "unpause the services' containers"),
    "version": ([FORMAT], "", "print the version"),
}

COMMANDS: dict[str, tuple[list[Any], str, str]] = {
    "compose": (GLOBAL, "COMMAND [OPTIONS] [ARGS...]", "run multi-container applications from a compose file"),
}
HELP = {"compose": "Commands:\n" + "\n".join(f"  {name:<8} {desc}" for name, (_, _, desc) in SUB.items())
        + "\n\nRun `pycontain compose COMMAND --help` for a command's options."}
# Commands that need no compose file (they find containers by their labels).
NO_FILE = {"ls", "version"}


def cmd_compose(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    if opts.get("help") or pos[:1] == ["help"]:
        if len(pos) > 1 and pos[1] in SUB:
            _help(pos[1])
        else:
            from pycontain import cli

            print(cli.usage("compose"))
        return 0
    if not pos:
        raise UsageError("usage: pycontain compose [-f FILE] [-p NAME] COMMAND [ARGS...] "
                         "(see `pycontain compose --help`)")
    sub, args = pos[0], pos[1:]
    if sub not in SUB:
        raise UsageError(f"unknown compose command {sub!r} (see `pycontain compose --help`)")
    spec, metavar, desc = SUB[sub]
    if args[:1] in (["--help"], ["-h"]) or (sub not in ("exec", "run") and "--help" in args):
        _help(sub)
        return 0
    sub_opts, rest = parse_options(spec, args, f"compose {sub}")
    if sub == "ls":
        return _ls(paths, sub_opts, rest)
    if sub == "version":
        from pycontain import __version__

        print(f"pycontain compose version {__version__}")
        return 0
    project = _load(paths, opts, sub)
    handler = globals()[f"_{sub}"]
    return int(handler(paths, project, opts, sub_opts, rest))


def _help(sub: str) -> None:
    from pycontain import cli

    print(cli.command_usage(f"compose {sub}", *SUB[sub]))


# Commands that work on a project's containers without its file, given -p NAME (as Compose's do).
BY_LABELS = {"down", "ps", "logs", "stop", "start", "restart", "kill", "rm", "top", "port", "images", "pause",
             "unpause"}


def _load(paths: Paths, opts: dict[str, Any], sub: str) -> model.Project:
    directory = opts["project_directory"] or "."
    files = list(opts["file"]) or [f for f in os.environ.get("COMPOSE_FILE", "").split(os.pathsep) if f] or None
    try:
        project = model.load(directory, files, opts["project_name"], list(opts["env_file"]) or None)
    except ComposeError as e:
        if files or not opts["project_name"] or sub not in BY_LABELS or not str(e).startswith("no compose file"):
            raise
        return engine.from_labels(paths, opts["project_name"])
    if opts["project_directory"]:
        from pathlib import Path

        project.directory = Path(directory).resolve()
    return project


def _lock(paths: Paths, project: model.Project) -> int:
    """One compose command at a time changes a project: two `up`s at once would both make replica 2."""
    import fcntl

    d = f"{paths.state}/compose"
    os.makedirs(d, 0o700, exist_ok=True)
    fd = os.open(f"{d}/{project.name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    # A POSIX record lock, not flock: the container monitors `up` forks would inherit an flock (it
    # belongs to the open file) and hold the project locked for as long as they run.
    fcntl.lockf(fd, fcntl.LOCK_EX)
    return fd


def _scale(items: list[str], project: model.Project) -> dict[str, int]:
    out = {}
    for item in items:
        name, eq, count = item.partition("=")
        if not eq or not count.isdigit():
            raise UsageError(f"invalid --scale {item!r}: expected SERVICE=N")
        if name not in project.services:
            raise ComposeError(f"no such service: {name}")
        if project.services[name].get("container_name") and int(count) > 1:
            raise ComposeError(f"service {name} has a container_name: it cannot have {count} replicas")
        out[name] = int(count)
    return out


def _timeout(opts: dict[str, Any]) -> float | None:
    return None if opts.get("timeout") is None else seconds_arg(opts["timeout"], "--timeout", 10.0)


# ------------------------------------------------------------------------------------------------- up

def _up(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any], named: list[str]) -> int:
    if opts["build"] and opts["no_build"]:
        raise UsageError("--build and --no-build conflict")
    if opts["force_recreate"] and opts["no_recreate"]:
        raise UsageError("--force-recreate and --no-recreate conflict")
    if opts["pull"] is not None and opts["pull"] not in ("missing", "always", "never"):
        raise UsageError(f"invalid --pull {opts['pull']!r}: use missing, always or never")
    scale = _scale(opts["scale"], project)
    act = engine.active(project, g["profile"], named)
    order = [s for s in model.start_order(project, named or act) if s in act or s in named]
    if opts["no_deps"] and named:
        order = [s for s in order if s in named]
    wait_timeout = seconds_arg(opts["wait_timeout"], "--wait-timeout", 0) if opts["wait_timeout"] else None
    detach = opts["detach"] or opts["wait"]
    lock = _lock(paths, project)
    try:
        images = engine.ensure_images(paths, project, order, True if opts["build"] else
                                      (False if opts["no_build"] else None), opts["pull"])
        _orphans(paths, project, opts["remove_orphans"])
        engine.ensure_resources(paths, project, order)
        timeout = _timeout(opts)
        for service in order:
            if not opts["no_start"] and not opts["no_deps"]:
                engine.wait_dependencies(paths, project, service, act)
            _converge(paths, project, service, images[service], engine.replicas(project, service, scale),
                      opts, timeout)
    finally:
        os.close(lock)
    if opts["no_start"]:
        return 0
    if opts["wait"]:
        deadline = time.monotonic() + wait_timeout if wait_timeout else None
        for service in order:
            _wait_service(paths, project, service, deadline)
        return 0
    if detach:
        return 0
    return _attached(paths, project, order, _timeout(opts))


def _converge(paths: Paths, project: model.Project, service: str, image: str, want: int,
              opts: dict[str, Any], timeout: float | None) -> None:
    """Make a service's replicas 1..want exist and run: unchanged ones are left alone (started if
    stopped), changed ones recreated (unless --no-recreate), extra ones removed (highest first)."""
    from pycontain import runtime

    digest = engine.config_hash(project, service, image)
    existing = engine.containers(paths, project.name, [service])
    by_number: dict[int, Record] = {}
    extra: list[Record] = []
    for rec in existing:
        n = engine.number(rec)
        if 1 <= n <= want and n not in by_number:
            by_number[n] = rec
        else:
            extra.append(rec)
    if extra:
        errors = engine.stop_all(paths, extra, timeout, "Removed", lambda r: runtime.remove(paths, r.id, force=True))
        if errors:
            raise PycontainError("; ".join(errors))
    for n in range(1, want + 1):
        old = by_number.get(n)
        if old is not None:
            rec = old
            same = engine.labels_of(rec).get(engine.HASH) == digest
            if opts["no_recreate"] or (same and not opts["force_recreate"]):
                if not engine.running(rec) and not opts["no_start"]:
                    runtime.start(paths, rec.id)
                    engine.say(f"Container {rec.name}  Started")
                else:
                    engine.say(f"Container {rec.name}  Running" if engine.running(rec) else
                               f"Container {rec.name}  Created")
                continue
            engine.say(f"Container {rec.name}  Recreate")
            if engine.running(rec):
                runtime.stop(paths, rec.id, timeout)
            runtime.remove(paths, rec.id, force=True)
        engine.create_container(paths, project, service, n, image, start=not opts["no_start"])


def _orphans(paths: Paths, project: model.Project, remove: bool) -> None:
    from pycontain import runtime

    orphans = [r for r in engine.containers(paths, project.name)
               if engine.labels_of(r).get(engine.SERVICE) not in project.services]
    if not orphans:
        return
    if not remove:
        engine.say(f"Found orphan containers ({', '.join(r.name for r in orphans)}) for this project. If you "
                   "removed or renamed this service in your compose file, run with --remove-orphans to clean "
                   "it up.")
        return
    errors = engine.stop_all(paths, orphans, None, "Removed", lambda r: runtime.remove(paths, r.id, force=True))
    if errors:
        raise PycontainError("; ".join(errors))


def _wait_service(paths: Paths, project: model.Project, service: str, deadline: float | None) -> None:
    """--wait: healthy if it has a health check, else running; a one-shot that exited 0 is done."""
    while True:
        recs = engine.containers(paths, project.name, [service])
        pending = False
        for rec in recs:
            st = rec.read_state()
            status = rec.status(st)
            hc = rec.config.healthcheck
            if status.can_exec():
                health = (st.health or {}).get("status")
                if hc and hc.get("Test") != ["NONE"] and health != "healthy":
                    if health == "unhealthy":
                        raise ComposeError(f"container {rec.name} is unhealthy")
                    pending = True
            elif status == "exited" and st.exit_code == 0:
                continue
            elif status in ("created", "starting", "restarting"):
                pending = True
            else:
                raise ComposeError(f"container {rec.name} exited ({st.exit_code})")
        if not pending:
            engine.say(f"Service {service}  Healthy" if any(r.config.healthcheck for r in recs)
                       else f"Service {service}  Running")
            return
        if deadline is not None and time.monotonic() > deadline:
            raise ComposeError(f"timed out waiting for service {service}")
        time.sleep(engine.POLL)


def _attached(paths: Paths, project: model.Project, services: list[str], timeout: float | None) -> int:
    """`up` without -d: the services' output, prefixed, until every container has exited; Ctrl-C stops
    them (gracefully), as Compose does."""
    recs = engine.containers(paths, project.name, services)
    try:
        _print_logs(recs, {"follow": True, "tail": None, "timestamps": False, "no_color": False,
                           "no_log_prefix": False}, services)
    except KeyboardInterrupt:
        engine.say("Gracefully stopping... (press Ctrl+C again to force)")
        ordered = engine.levels(project, services)
        for level in reversed(ordered):
            engine.stop_all(paths, engine.containers(paths, project.name, level), timeout)
        return 130
    return 0


# ------------------------------------------------------------------------------------------------ down

def _down(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any], rest: list[str]) -> int:
    from pycontain import runtime

    if rest:
        raise UsageError("compose down takes no services (it removes the whole project)")
    if opts["rmi"] not in (None, "local", "all"):
        raise UsageError(f"invalid --rmi {opts['rmi']!r}: use local or all")
    timeout = _timeout(opts)
    lock = _lock(paths, project)
    errors: list[str] = []
    try:
        everything = engine.containers(paths, project.name, oneoff=None)
        known = [r for r in everything if engine.labels_of(r).get(engine.SERVICE) in project.services]
        orphans = [r for r in everything if r not in known]
        if orphans and not opts["remove_orphans"]:
            engine.say(f"Found orphan containers ({', '.join(r.name for r in orphans)}) for this project: "
                       "--remove-orphans removes them")
        targets = known + (orphans if opts["remove_orphans"] else [])
        by_service: dict[str, list[Record]] = {}
        for rec in targets:
            by_service.setdefault(engine.labels_of(rec).get(engine.SERVICE, ""), []).append(rec)
        for level in reversed(engine.levels(project, list(by_service))):
            recs = [r for s in level for r in by_service[s]]
            errors += engine.stop_all(paths, recs, timeout)
            errors += engine.stop_all(paths, recs, timeout, "Removed",
                                      lambda r: runtime.remove(paths, r.id, force=True, volumes=opts["volumes"]))
        engine.remove_networks(paths, project)
        if opts["volumes"]:
            engine.remove_volumes(paths, project)
        if opts["rmi"]:
            _remove_images(paths, project, opts["rmi"])
    finally:
        os.close(lock)
    if errors:
        raise PycontainError("; ".join(errors))
    return 0


def _remove_images(paths: Paths, project: model.Project, which: str) -> None:
    from pycontain import cli
    from pycontain.images import commands

    refs = sorted({engine.image_name(project, s) for s, svc in project.services.items()
                   if which == "all" or not svc.get("image")})
    for ref in refs:
        if engine.image_id(paths, ref) is None:
            continue
        opts, pos = cli.parse_options(commands.COMMANDS["rmi"][0], [ref], "rmi")
        try:
            with engine.stdout_to_stderr(False):
                commands.cmd_rmi(paths, opts, pos)
            engine.say(f"Image {ref}  Removed")
        except PycontainError as e:
            engine.say(f"Image {ref}  Error: {e}")


# ------------------------------------------------------------------------------------------ listings

PS_HEADERS = {"Name": "NAME", "Image": "IMAGE", "Command": "COMMAND", "Service": "SERVICE",
              "RunningFor": "CREATED", "Status": "STATUS", "Ports": "PORTS", "ID": "CONTAINER ID", "State": "STATE"}
PS_TABLE = "table {{.Name}}\\t{{.Image}}\\t{{.Command}}\\t{{.Service}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}"


def _ps(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any], named: list[str]) -> int:
    from pycontain import cli
    from pycontain.clifmt import listing

    for s in named:
        if s not in project.services:
            raise ComposeError(f"no such service: {s}")
    if opts["services"]:
        for s in engine.active(project, g["profile"], named or None):
            if not named or s in named:
                print(s)
        return 0
    statuses = set(opts["status"])
    now = time.time()
    rows = []
    for rec in engine.containers(paths, project.name, named or None, oneoff=None):
        try:
            st = rec.read_state()
            status = rec.status(st)
        except (OSError, ValueError):
            continue
        if statuses and cli.ps_state(status) not in statuses:
            continue
        if not (opts["all"] or statuses) and not status.can_exec():
            continue
        row = cli.ps_row(rec, st, status, now, trunc=True)
        ports = (rec.network or {}).get("ports") or []
        row.update({
            "Name": rec.name, "Service": engine.labels_of(rec).get(engine.SERVICE, ""), "Project": project.name,
            "ID": rec.id if opts["quiet"] else row["ID"], "ExitCode": st.exit_code or 0,
            "Health": (st.health or {}).get("status", "") if status.can_exec() else "",
            "Publishers": [{"URL": p.get("host_ip") or "0.0.0.0", "TargetPort": p["container_port"],
                            "PublishedPort": p["host_port"], "Protocol": p["protocol"]} for p in ports],
        })
        rows.append(row)
    fmt = opts["format"]
    listing(fmt, rows, PS_HEADERS, PS_TABLE, opts["quiet"])
    return 0


def _images(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any], named: list[str]) -> int:
    from pycontain.clifmt import listing, size
    from pycontain.images.store import Store

    sizes = {config["id"]: nbytes for _, _, config, nbytes in Store(paths).images()}
    rows = []
    for rec in engine.containers(paths, project.name, named or None, oneoff=None):
        ref = rec.image
        repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
        total = sizes.get(rec.image_id)
        rows.append({"ContainerName": rec.name, "Repository": repo, "Tag": tag,
                     "ID": rec.image_id.removeprefix("sha256:")[:12], "Size": size(total) if total else ""})
    headers = {"ContainerName": "CONTAINER", "Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID",
               "Size": "SIZE"}
    listing(opts["format"], rows, headers,
            "table {{.ContainerName}}\\t{{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.Size}}", opts["quiet"])
    return 0


def _ls(paths: Paths, opts: dict[str, Any], rest: list[str]) -> int:
    from pycontain.clifmt import listing

    if rest:
        raise UsageError("compose ls takes no arguments")
    rows = []
    for name, recs in sorted(engine.projects(paths).items()):
        counts: dict[str, int] = {}
        files = ""
        for rec in recs:
            try:
                status = str(rec.status())
            except (OSError, ValueError):
                continue
            counts[status] = counts.get(status, 0) + 1
            files = files or engine.labels_of(rec).get(engine.FILES, "")
        if not opts["all"] and not counts.get("running"):
            continue
        rows.append({"Name": name, "Status": ", ".join(f"{k}({v})" for k, v in sorted(counts.items())),
                     "ConfigFiles": files})
    listing(opts["format"], rows, {"Name": "NAME", "Status": "STATUS", "ConfigFiles": "CONFIG FILES"},
            "table {{.Name}}\\t{{.Status}}\\t{{.ConfigFiles}}", opts["quiet"], "{{.Name}}")
    return 0


def _config(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any], named: list[str]) -> int:
    if opts["format"] not in (None, "yaml", "json"):
        raise UsageError(f"invalid --format {opts['format']!r}: use yaml or json")
    if named:
        keep = set(model.start_order(project, named))
        project.services = {k: v for k, v in project.services.items() if k in keep}
    else:
        act = set(engine.active(project, g["profile"]))
        project.services = {k: v for k, v in project.services.items() if k in act}
    if opts["quiet"]:
        return 0
    if opts["services"]:
        text = "".join(f"{s}\n" for s in project.services)
    elif opts["volumes"]:
        text = "".join(f"{v}\n" for v in project.volumes)
    elif opts["networks"]:
        text = "".join(f"{n}\n" for n in project.networks)
    elif opts["images"]:
        text = "".join(f"{engine.image_name(project, s)}\n" for s in project.services)
    elif opts["format"] == "json":
        import json

        text = json.dumps(model.normalized(project), indent=2, sort_keys=True) + "\n"
    else:
        text = model.dump(project)
    if opts["output"]:
        with open(opts["output"], "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


# ------------------------------------------------------------------------------------------------ logs

COLOURS = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")


def _logs(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any], named: list[str]) -> int:
    for s in named:
        if s not in project.services:
            raise ComposeError(f"no such service: {s}")
    if opts["tail"] is not None and not (opts["tail"].isdigit() or opts["tail"] == "all"):
        raise UsageError(f"invalid --tail {opts['tail']!r}: expected a number of lines")
    recs = engine.containers(paths, project.name, named or None, oneoff=None)
    if opts["index"] is not None:
        recs = [r for r in recs if str(engine.number(r)) == opts["index"]]
    _print_logs(recs, opts, list(project.services))
    return 0


def _print_logs(recs: list[Record], opts: dict[str, Any], services: list[str]) -> None:
    """Every container's log lines with its name before them ("web-1  | ..."), one colour per service
    on a terminal; -f follows each container (a thread each) until all have stopped."""
    import threading

    from pycontain import logs

    colour = sys.stdout.isatty() and not opts.get("no_color") and not os.environ.get("NO_COLOR")
    # Compose names a container in its logs without the project: "web-1", or its container_name.
    shown = {r.id: r.name.removeprefix(engine.labels_of(r).get(engine.PROJECT, "\0") + "-") for r in recs}
    width = max((len(n) for n in shown.values()), default=0)
    prefixes: dict[str, bytes] = {}
    for rec in recs:
        service = engine.labels_of(rec).get(engine.SERVICE, "")
        text = f"{shown[rec.id]:<{width + 1}} | "  # as Compose pads it: one space more than the longest name
        if colour:
            code = COLOURS[services.index(service) % len(COLOURS)] if service in services else "0"
            text = f"\x1b[{code}m{text}\x1b[0m"
        prefixes[rec.id] = b"" if opts.get("no_log_prefix") else text.encode()
    out_lock = threading.Lock()

    def emit(rec: Record, items: list[Any]) -> None:
        chunks = []
        for r in items:
            line = r.text if r.text.endswith(b"\n") else r.text + b"\n"
            if opts.get("timestamps") and r.time is not None:
                line = logs.format_fixed(r.time).encode() + b" " + line
            chunks.append(prefixes[rec.id] + line)
        if chunks:
            with out_lock:
                data = b"".join(chunks)
                while data:
                    data = data[os.write(1, data):]

    opened: dict[str, int | None] = {}
    everything: list[tuple[int, int, Record, Any]] = []
    for i, rec in enumerate(recs):
        data, current = logs.read_all(rec.log_path, rec.config.log_max_files)
        opened[rec.id] = current
        records = logs.records(data)
        tail = opts.get("tail")
        if tail is not None and tail != "all":
            records = records[-int(tail):] if int(tail) else []
        everything += [(r.time or 0, i, rec, r) for r in records]
    everything.sort(key=lambda x: (x[0], x[1]))
    try:
        for _, _, rec, r in everything:
            emit(rec, [r])
    except BaseException:
        for fd in opened.values():
            if fd is not None:
                os.close(fd)
        raise
    if not opts.get("follow"):
        for fd in opened.values():
            if fd is not None:
                os.close(fd)
        return

    def follow(rec: Record) -> None:
        try:
            for record in logs.follow_records(rec.log_path, rec.is_locked, opened[rec.id]):
                emit(rec, [record])
        except (OSError, ValueError):
            pass

    threads = [threading.Thread(target=follow, args=(rec,), daemon=True) for rec in recs]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):  # the main thread waits, so Ctrl-C reaches it
        for t in threads:
            t.join(0.1)


# ------------------------------------------------------------------------------------------ exec / run

def _replica(paths: Paths, project: model.Project, service: str, index: str | None) -> Record:
    if service not in project.services:
        raise ComposeError(f"no such service: {service}")
    n = index or "1"
    if not n.isdigit():
        raise UsageError(f"invalid --index {index!r}")
    for rec in engine.containers(paths, project.name, [service]):
        if str(engine.number(rec)) == n:
            return rec
    raise ComposeError(f"service {service} has no container {n} (is the project up?)")


def _exec(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any], rest: list[str]) -> int:
    from pycontain import cli

    if len(rest) < 2:
        raise UsageError("usage: pycontain compose exec [OPTIONS] SERVICE COMMAND [ARG...]")
    rec = _replica(paths, project, rest[0], opts["index"])
    if not rec.status().can_exec():
        raise ComposeError(f"service {rest[0]}: container {rec.name} is not running")
    argv = []
    if opts["detach"]:
        argv.append("-d")
    else:
        argv.append("-i")
        if not opts["no_tty"] and os.isatty(0) and os.isatty(1):
            argv.append("-t")
    for e in opts["env"]:
        argv += ["-e", e]
    if opts["user"]:
        argv += ["-u", opts["user"]]
    if opts["workdir"]:
        argv += ["-w", opts["workdir"]]
    if opts["privileged"]:
        argv.append("--privileged")
    eopts, epos = parse_options(cli.COMMANDS["exec"][0], [*argv, rec.id, *rest[1:]], "exec")
    return int(cli.cmd_exec(paths, eopts, epos))


def _run(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any], rest: list[str]) -> int:
    from pycontain import runtime

    if not rest:
        raise UsageError("usage: pycontain compose run [OPTIONS] SERVICE [COMMAND [ARG...]]")
    service, command = rest[0], rest[1:]
    if service not in project.services:
        raise ComposeError(f"no such service: {service}")
    if opts["detach"] and opts["rm"]:
        raise UsageError("--detach and --rm conflict")
    act = engine.active(project, g["profile"], [service])
    needed = [service] if opts["no_deps"] else [s for s in model.start_order(project, [service]) if s in act]
    lock = _lock(paths, project)
    try:
        images = engine.ensure_images(paths, project, needed, True if opts["build"] else None)
        engine.ensure_resources(paths, project, needed)
        for dep in needed[:-1] if needed[-1] == service else needed:
            if dep == service:
                continue
            engine.wait_dependencies(paths, project, dep, act)
            if not engine.containers(paths, project.name, [dep], include_stopped=True):
                engine.create_container(paths, project, dep, 1, images[dep])
            else:
                for rec in engine.containers(paths, project.name, [dep]):
                    if not engine.running(rec) and rec.status() != "exited":
                        runtime.start(paths, rec.id)
        if not opts["no_deps"]:
            engine.wait_dependencies(paths, project, service, act)
    finally:
        os.close(lock)
    name = opts["name"] or f"{project.name}-{service}-run-{os.urandom(6).hex()}"
    labels = engine.base_labels(project, service, 1, oneoff=True)
    extra = []
    for item in opts["label"]:
        extra += ["--label", item]
    for e in opts["env"]:
        extra += ["-e", e]
    if opts["user"]:
        extra += ["--user", opts["user"]]
    if opts["workdir"]:
        extra += ["--workdir", opts["workdir"]]
    if opts["rm"]:
        extra.append("--rm")
    tty = not opts["no_tty"] and not opts["detach"] and os.isatty(0) and os.isatty(1)
    if not opts["detach"]:
        extra.append("--interactive")
    if tty:
        extra.append("--tty")
    cfg = engine.config_for(paths, project, service, name, labels, command=command or None,
                            publish=opts["service_ports"], extra=extra)
    if opts["entrypoint"] is not None:
        import shlex

        cfg = cfg.replace(entrypoint=tuple(shlex.split(opts["entrypoint"])))
    cfg = cfg.replace(detach=bool(opts["detach"]), restart=None)
    hook = lambda rec: engine.connect_extras(paths, project, service, rec)  # noqa: E731
    if opts["detach"]:
        rec = runtime.run_detached(paths, cfg, before_start=hook)
        print(rec.name)
        return 0
    return runtime.run(paths, cfg, before_start=hook)


# ---------------------------------------------------------------------------------------- build etc.

def _build(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any], named: list[str]) -> int:
    services = [s for s in engine.active(project, g["profile"], named or None) if not named or s in named]
    for service in services:
        if "build" in project.services[service]:
            engine.build_service(paths, project, service, opts["no_cache"], opts["pull"], opts["quiet"])
        elif named:
            engine.say(f"Service {service}  Skipped: no build section")
    return 0


def _pull(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any], named: list[str]) -> int:
    code = 0
    for service in [s for s in engine.active(project, g["profile"], named or None) if not named or s in named]:
        svc = project.services[service]
        if "image" not in svc or (opts["ignore_buildable"] and "build" in svc):
            continue
        try:
            if not opts["quiet"]:
                engine.say(f"Service {service}  Pulling")
            engine.pull_image(paths, svc["image"])
            if not opts["quiet"]:
                engine.say(f"Service {service}  Pulled")
        except PycontainError as e:
            if "build" in svc:  # a buildable service's image may not exist anywhere yet
                engine.say(f"Service {service}  Skipped: {e}")
                continue
            print(f"pycontain: service {service}: {e}", file=sys.stderr)
            code = e.exit_code
    return code


def _push(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any], named: list[str]) -> int:
    from pycontain import cli
    from pycontain.images import commands

    for service in [s for s in engine.active(project, g["profile"], named or None) if not named or s in named]:
        svc = project.services[service]
        if "image" not in svc:
            continue  # Compose pushes only services that name an image
        popts, pos = cli.parse_options(commands.COMMANDS["push"][0], [*(["-q"] if opts["quiet"] else []),
                                                                     svc["image"]], "push")
        code = commands.cmd_push(paths, popts, pos)
        if code:
            return int(code)
    return 0


# ----------------------------------------------------------------------------------- lifecycle commands

def _targets(paths: Paths, project: model.Project, named: list[str]) -> list[Record]:
    for s in named:
        if s not in project.services:
            raise ComposeError(f"no such service: {s}")
    return engine.containers(paths, project.name, named or None)


def _by_level(project: model.Project, recs: list[Record], reverse: bool) -> list[list[Record]]:
    by_service: dict[str, list[Record]] = {}
    for rec in recs:
        by_service.setdefault(engine.labels_of(rec).get(engine.SERVICE, ""), []).append(rec)
    out = [[r for s in level for r in by_service[s]] for level in engine.levels(project, list(by_service))]
    return out[::-1] if reverse else out


def _finish(errors: list[str]) -> int:
    if errors:
        raise PycontainError("; ".join(errors))
    return 0


def _start(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any], named: list[str]) -> int:
    from pycontain import runtime

    recs = _targets(paths, project, named)
    if not recs:
        raise ComposeError("no containers to start (run `compose up` first)")
    act = engine.active(project, g["profile"])
    errors: list[str] = []
    for level in _by_level(project, recs, reverse=False):
        for rec in level:
            if engine.running(rec):
                continue
            service = engine.labels_of(rec).get(engine.SERVICE, "")
            if service in project.services:
                engine.wait_dependencies(paths, project, service, act)
            try:
                runtime.start(paths, rec.id)
                engine.say(f"Container {rec.name}  Started")
            except PycontainError as e:
                errors.append(f"{rec.name}: {e}")
    return _finish(errors)


def _stop(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any], named: list[str]) -> int:
    errors: list[str] = []
    for level in _by_level(project, _targets(paths, project, named), reverse=True):
        errors += engine.stop_all(paths, level, _timeout(opts))
    return _finish(errors)


def _restart(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any],
             named: list[str]) -> int:
    _stop(paths, project, g, opts, named)
    return _start(paths, project, g, opts, named)


def _kill(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any], named: list[str]) -> int:
    from pycontain import runtime
    from pycontain.config import parse_signal

    signum = parse_signal(opts["signal"] or "KILL")
    recs = [r for r in _targets(paths, project, named) if engine.running(r)]
    return _finish(engine.stop_all(paths, recs, None, "Killed", lambda r: runtime.kill(paths, r.id, signum)))


def _rm(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any], named: list[str]) -> int:
    from pycontain import runtime

    recs = _targets(paths, project, named)
    if opts["stop"]:
        for level in _by_level(project, recs, reverse=True):
            engine.stop_all(paths, level, None)
    stopped = [r for r in recs if not engine.running(r)]
    if not stopped:
        engine.say("No stopped containers")
        return 0
    if not opts["force"]:
        from pycontain.clifmt import confirm

        if not confirm(f"Going to remove {', '.join(r.name for r in stopped)}",
                       "refusing to remove containers without confirmation (use -f)"):
            return 0
    return _finish(engine.stop_all(paths, stopped, None, "Removed",
                                   lambda r: runtime.remove(paths, r.id, volumes=opts["volumes"])))


def _pause(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any], named: list[str]) -> int:
    from pycontain import runtime

    recs = [r for r in _targets(paths, project, named) if engine.running(r)]
    return _finish(engine.stop_all(paths, recs, None, "Paused", lambda r: runtime.pause(paths, r.id)))


def _unpause(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any],
             named: list[str]) -> int:
    from pycontain import runtime

    recs = _targets(paths, project, named)
    return _finish(engine.stop_all(paths, recs, None, "Unpaused", lambda r: runtime.unpause(paths, r.id)))


def _top(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any], named: list[str]) -> int:
    from pycontain import cli

    for rec in [r for r in _targets(paths, project, named) if engine.running(r)]:
        print(rec.name)
        sys.stdout.flush()
        cli.cmd_top(paths, {}, [rec.id])
        print()
    return 0


def _port(paths: Paths, project: model.Project, g: dict[str, Any], opts: dict[str, Any], rest: list[str]) -> int:
    if len(rest) != 2:
        raise UsageError("usage: pycontain compose port [--protocol tcp|udp] [--index N] SERVICE PRIVATE_PORT")
    protocol = opts["protocol"] or "tcp"
    if protocol not in ("tcp", "udp", "sctp"):
        raise UsageError(f"invalid --protocol {protocol!r}")
    rec = _replica(paths, project, rest[0], opts["index"])
    for p in (rec.network or {}).get("ports") or []:
        if str(p["container_port"]) == rest[1] and p["protocol"] == protocol:
            print(f"{p.get('host_ip') or '0.0.0.0'}:{p['host_port']}")
            return 0
    raise ComposeError(f"no port {rest[1]}/{protocol} published for service {rest[0]}")


HANDLERS = {"compose": cmd_compose}
