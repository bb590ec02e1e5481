"""`pycontain-oci`: the runc command line, so podman (through conmon), containerd (through its runc v2
shim) and Kubernetes can use pycontain's executor as their OCI runtime.

    pycontain-oci [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND [ARGS]

create leaves the container's init set up and blocked just before execve, as a child of the caller
(conmon and the shim are subreapers that wait for it); start lets it exec; state reads the kernel;
delete releases everything. Errors are one line on stderr (and in --log, as JSON with --log-format
json, where containerd reads the last one) and exit status 125; 127 (126) when the container's program
does not exist (cannot be executed), which create checks before it reports the container ready.
"""

from __future__ import annotations

import _signal as signal
import gc
import os
import sys
import time

from pycontain import faults, jsonfast
from pycontain.errors import PycontainError, UsageError, leave
from pycontain.oci.state import (CREATED, PAUSED, RUNNING, STOPPED, Container, ContainerNotFound, v1_extra,
                                 all_ids, check_id)
from pycontain.state import proc_starttime

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

VERSION = "0.1.0"
MAX_CONFIG = 16 << 20  # config.json is untrusted: never read more than this

# Options each command takes: name -> (aliases, takes a value, may repeat).
_Opt = tuple[tuple[str, ...], bool, bool]
GLOBAL_OPTS: dict[str, _Opt] = {
    "root": ((), True, False), "log": ((), True, False), "log-format": ((), True, False), "debug": ((), False, False),
    "systemd-cgroup": ((), False, False), "criu": ((), True, False), "rootless": ((), True, False),
    "help": (("h",), False, False), "version": (("v",), False, False),
}
CREATE_OPTS: dict[str, _Opt] = {
    "bundle": (("b",), True, False), "pid-file": ((), True, False), "console-socket": ((), True, False),
    "no-pivot": ((), False, False), "no-new-keyring": ((), False, False), "preserve-fds": ((), True, False),
}
COMMAND_OPTS: dict[str, dict[str, _Opt]] = {
    "create": CREATE_OPTS,
    "run": {**CREATE_OPTS, "detach": (("d",), False, False), "keep": ((), False, False)},
    "start": {}, "state": {}, "pause": {}, "resume": {}, "features": {},
    "kill": {"all": (("a",), False, False)},
    "delete": {"force": (("f",), False, False)},
    "exec": {"process": (("p",), True, False), "detach": (("d",), False, False), "pid-file": ((), True, False),
             "console-socket": ((), True, False), "tty": (("t",), False, False), "cwd": ((), True, False),
             "env": (("e",), True, True), "user": (("u",), True, False), "additional-gids": (("g",), True, True),
             "cap": (("c",), True, True), "no-new-privs": ((), False, False), "preserve-fds": ((), True, False),
             "process-label": ((), True, False), "apparmor": ((), True, False)},
    "ps": {"format": (("f",), True, False)},
    "list": {"format": (("f",), True, False), "quiet": (("q",), False, False)},
    "update": {"resources": (("r",), True, False), "memory": ((), True, False), "memory-reservation": ((), True, False),
               "memory-swap": ((), True, False), "cpu-period": ((), True, False), "cpu-quota": ((), True, False),
               "cpu-share": ((), True, False), "cpuset-cpus": ((), True, False), "cpuset-mems": ((), True, False),
               "pids-limit": ((), True, False)},
    "spec": {"bundle": (("b",), True, False), "rootless": ((), False, False)},
}
COMMAND_OPTS["ls"] = COMMAND_OPTS["list"]
USAGE = """usage: pycontain-oci [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND [ARGS]

commands (as runc's):
  create [--bundle DIR] [--pid-file F] [--console-socket SOCK] [--preserve-fds N] ID
  start ID | state ID | kill [--all] ID [SIGNAL] | delete [--force] ID
  run [--bundle DIR] [--detach] [--pid-file F] [--console-socket SOCK] ID
  exec [--process FILE | --tty --cwd DIR --env K=V --user UID[:GID] ID ARGS...] [--detach] [--pid-file F]
  ps [--format table|json] ID | list [--format table|json] [--quiet]
  pause ID | resume ID | update [--resources FILE|-] ID | features | spec [--bundle DIR]
"""


class Options:
    def __init__(self, values: dict[str, Any], args: list[str]) -> None:
        self.values, self.args = values, args

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)


def parse(argv: list[str], table: dict[str, _Opt], stop_at_positional: bool) -> Options:
    """Go-style flags as runc takes them: --name value, --name=value, -n value, -name; repeated ones
    collect into a list; with stop_at_positional, the first non-flag ends the options (the command)."""
    names = {}
    for name, (aliases, _, _) in table.items():
        names[name] = name
        for alias in aliases:
            names[alias] = name
    values: dict[str, Any] = {}
    args: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            args += argv[i + 1:]
            break
        if not word.startswith("-") or word == "-":
            if stop_at_positional:
                args += argv[i:]
                break
            args.append(word)
            i += 1
            continue
        key, eq, inline = word.lstrip("-").partition("=")
        if key not in names:
            raise UsageError(f"flag provided but not defined: {word}")
        name = names[key]
        _, takes_value, repeats = table[name]
        if takes_value:
            if eq:
                value: Any = inline
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                raise UsageError(f"flag needs an argument: {word}")
        else:
            value = inline.lower() not in ("false", "0") if eq else True
        if repeats:
            values.setdefault(name, []).append(value)
        else:
            values[name] = value
        i += 1
    return Options(values, args)


class Runtime:
    """The global options, and the commands."""

    def __init__(self, opts: Options) -> None:
        from pycontain.state import check_root

        self.root = os.path.abspath(opts.get("root") or os.environ.get("PYCONTAIN_OCI_ROOT") or
                                    "/run/pycontain-oci")
        check_root(self.root, create=True)
        if opts.get("systemd-cgroup"):
            raise UsageError("--systemd-cgroup: pycontain-oci has no systemd cgroup driver; use the cgroupfs "
                             "manager (podman --cgroup-manager cgroupfs; containerd SystemdCgroup = false)")

    # ------------------------------------------------------------ helpers

    def one_id(self, opts: Options, command: str) -> str:
        if len(opts.args) != 1:
            raise UsageError(f"{command} takes exactly one container id")
        return check_id(opts.args[0])

    def seccomp_cache(self) -> str:
        """Compiled seccomp filters (seccomp.compile_cached), under the root; '@' is never in a
        container id, so no container's record can be this directory."""
        return f"{self.root}/@seccomp-cache"

    def load(self, cid: str) -> Container:
        return Container.load(self.root, cid)

    # ------------------------------------------------------------ create / start / run

    def create(self, opts: Options, start_now: bool = False, detach: bool = True) -> int:
        from pycontain.oci import executor

        cid = self.one_id(opts, "create")
        bundle = os.path.abspath(opts.get("bundle") or ".")
        spec = read_bundle(bundle)
        c = Container(self.root, cid)
        try:
            os.mkdir(c.dir, 0o700)
        except FileExistsError:
            raise PycontainError(f"container with id {cid} already exists") from None
        undo = _Undo()
        try:
            undo.push(_rmtree, c.dir)
            with open(f"{c.dir}/config.json", "w") as f:
                f.write(jsonfast.dumps(spec))
            annotations = spec.get("annotations") or {}
            extra = v1_extra(spec)
            p = executor.plan(spec, bundle, cid, extra, seccomp_cache=self.seccomp_cache())
            undo.push(p.close)
            assert p.rootfs is not None and p.process is not None and p.cgroup is not None
            c.save(ociVersion=spec["ociVersion"], id=cid, pid=0, bundle=bundle, rootfs=p.rootfs.rootfs,
                   created=_now(), annotations=annotations, cgroup_path=p.cgroup.name, cgroup_extra=list(extra),
                   creator=os.getpid())
            proc = p.process
            proc.oci = detach
            proc.preserve_fds = int(opts.get("preserve-fds") or 0)
            if not start_now:
                # 0622: the init may have become a non-root user by the time it opens it for writing.
                os.mkfifo(c.fifo, 0o622)
                os.chmod(c.fifo, 0o622)  # mkfifo applied the umask
                proc.exec_fifo = os.open(c.fifo, os.O_PATH | os.O_CLOEXEC)
                undo.push(_close_fifo, proc)
            if opts.get("console-socket"):
                if not proc.tty:
                    raise UsageError("--console-socket given but process.terminal is false")
                proc.console = _connect(opts.get("console-socket"))
                undo.push(proc.console.close)
            elif proc.tty and detach:
                raise UsageError("process.terminal is true: give --console-socket (or use `run` in a terminal)")
            p.hook_state = {"ociVersion": spec["ociVersion"], "id": cid, "status": "creating", "bundle": bundle,
                            "annotations": annotations}
            if p.hooks:
                from pycontain.oci import hooks  # json + subprocess: only when the spec has hooks
            if p.hooks.get("startContainer"):
                start_hooks = p.hooks["startContainer"]
                proc.start_hooks = lambda: hooks.run_all(start_hooks, dict(p.hook_state, status="created"),
                                                         "startContainer")
            cg = executor.make_cgroup(p)
            c.save(cgroup_parents=cg.parents_made)
            undo.push(cg.remove)
            faults.phase("oci.create.cgroup")
            child = executor.spawn(p)
            _close_fifo(proc)  # the init has its own copy
            undo.push(_kill_and_reap if not detach else _kill, child.pid)
            undo.push(child.close)
            faults.phase("oci.create.clone")
            child.go()

            def runtime_hooks() -> None:
                from pycontain.oci import hooks

                state = dict(p.hook_state, pid=child.pid)
                for kind in executor.RUNTIME_HOOKS:
                    hooks.run_all(p.hooks.get(kind) or [], state, kind)

            if start_now:
                child.wait_exec(runtime_hooks)
            else:
                child.wait_ready(runtime_hooks)
            c.save(pid=child.pid, pid_start=proc_starttime(child.pid), creator=None)
            faults.phase("oci.create.saved")
            c.write_fast(spec, cg)
            if opts.get("pid-file"):
                _write_pid_file(opts.get("pid-file"), child.pid)
            undo.forget()
        except BaseException:
            undo.run()
            raise
        if start_now:
            self._poststart(c)
            if not detach:
                return self._wait_foreground(c, child)
        return 0

    def start(self, opts: Options) -> int:
        c = self.load(self.one_id(opts, "start"))
        lock = c.lock()
        try:
            status = c.status()
            if status != CREATED:
                raise PycontainError(f"cannot start a container that is {status} (only a created one)")
            fd = os.open(c.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            import select

            try:
                # Our open let the init's blocked open-for-writing through; it writes one byte next.
                while True:
                    ready = select.select([fd], [], [], 0.1)[0]
                    if ready and os.read(fd, 1):
                        break
                    if not c.alive():
                        raise PycontainError("the container's init exited before it could start")
            finally:
                os.close(fd)
            faults.phase("oci.start")
            os.unlink(c.fifo)
        finally:
            os.close(lock)
        self._poststart(c)
        return 0

    def _poststart(self, c: Container) -> None:
        entries = (c.spec.get("hooks") or {}).get("poststart") or []
        if entries:
            from pycontain.oci import hooks

            for message in hooks.run_all(entries, c.oci_state(), "poststart", fatal=False):
                warn(message)

    def _wait_foreground(self, c: Container, child: Any) -> int:
        """`run` without --detach: relay a terminal if we made one, wait, then delete the container."""
        code = _attend(child)
        self._delete(c, force=True)
        return code

    def run(self, opts: Options) -> int:
        """create + start; without --detach this process stays, relays a terminal if the spec asks for
        one and no --console-socket is given, and deletes the container when its process exits."""
        return self.create(opts, start_now=True, detach=bool(opts.get("detach")))

    # ------------------------------------------------------------ state / list / ps

    def state(self, opts: Options) -> int:
        c = self.load(self.one_id(opts, "state"))
        print(jsonfast.dumps(c.oci_state()))
        return 0

    def list(self, opts: Options) -> int:
        rows = []
        for cid in all_ids(self.root):
            try:
                rows.append(Container.load(self.root, cid).oci_state())
            except (ContainerNotFound, OSError, ValueError):
                continue  # deleted meanwhile
        fmt = opts.get("format") or "table"
        if opts.get("quiet"):
            print("\n".join(r["id"] for r in rows))
        elif fmt == "json":
            print(jsonfast.dumps(rows))
        elif fmt == "table":
            print(f"{'ID':<20} {'PID':<8} {'STATUS':<10} {'BUNDLE':<40} {'CREATED':<32} OWNER")
            for r in rows:
                print(f"{r['id']:<20} {r['pid']:<8} {r['status']:<10} {r['bundle']:<40} {r['created']:<32} root")
        else:
            raise UsageError(f"invalid --format {fmt!r}: use table or json")
        return 0

    def ps(self, opts: Options) -> int:
        if not opts.args:
            raise UsageError("ps takes a container id")
        c = self.load(check_id(opts.args[0]))
        pids = sorted(c.cgroup().procs()) if c.status() != STOPPED else []
        fmt = opts.get("format") or "table"
        if fmt == "json":
            print(jsonfast.dumps(pids))
            return 0
        if fmt != "table":
            raise UsageError(f"invalid --format {fmt!r}: use table or json")
        print(f"{'UID':<8} {'PID':<8} {'PPID':<8} CMD")
        for pid in pids:
            try:
                with open(f"/proc/{pid}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            print(f"{fields['Uid'].split()[0]:<8} {pid:<8} {fields['PPid'].strip():<8} {cmd}")
        return 0

    # ------------------------------------------------------------ kill / delete / pause / resume

    def kill(self, opts: Options) -> int:
        if not 1 <= len(opts.args) <= 2:
            raise UsageError("kill takes a container id and an optional signal")
        c = self.load(check_id(opts.args[0]))
        signum = parse_signal(opts.args[1] if len(opts.args) == 2 else "SIGTERM")
        status = c.status()
        if status == STOPPED and not opts.get("all"):
            raise PycontainError("container not running")
        if opts.get("all"):
            for pid in c.cgroup().procs():
                _signal(pid, signum)
        else:
            _signal(c.pid(), signum)
        if status == PAUSED and signum == signal.SIGKILL:
            c.cgroup().freeze(False)  # a frozen process cannot act on SIGKILL until thawed
        return 0

    def delete(self, opts: Options) -> int:
        cid = self.one_id(opts, "delete")
        try:
            c = self.load(cid)
        except ContainerNotFound:
            if opts.get("force"):
                # Engines clean up with `delete --force` after a failed create, which already removed
                # everything: nothing left to do is success, as with runc.
                _rmtree(f"{self.root}/{cid}")
                return 0
            raise
        self._delete(c, bool(opts.get("force")))
        return 0

    def _delete(self, c: Container, force: bool) -> None:
        lock = c.lock()
        try:
            status = c.status()
            if status in (RUNNING, PAUSED) and not force:
                raise PycontainError(f"cannot delete container {c.id} that is not stopped: {status} "
                                     "(use --force)")
            cg = c.cgroup()
            if status != STOPPED:
                _signal(c.pid(), signal.SIGKILL)
                if status == PAUSED:
                    cg.freeze(False)
                deadline = time.monotonic() + 10
                while c.alive() and time.monotonic() < deadline:
                    time.sleep(0.005)
            faults.phase("oci.delete")
            if cg.exists():
                cg.kill()
                cg.remove()
            entries = (c.spec.get("hooks") or {}).get("poststop") or []
            if entries:
                from pycontain.oci import hooks

                state = dict(c.oci_state(), status=STOPPED)
                for message in hooks.run_all(entries, state, "poststop", fatal=False):
                    warn(message)
            _rmtree(c.dir)
        finally:
            os.close(lock)

    def pause(self, opts: Options) -> int:
        c = self.load(self.one_id(opts, "pause"))
        if c.status() != RUNNING:
            raise PycontainError(f"container {c.id} is not running")
        c.cgroup().freeze(True)
        return 0

    def resume(self, opts: Options) -> int:
        c = self.load(self.one_id(opts, "resume"))
        if c.status() != PAUSED:
            raise PycontainError(f"container {c.id} is not paused")
        c.cgroup().freeze(False)
        return 0

    def update(self, opts: Options) -> int:
        from pycontain import oci as ocispec
        from pycontain.oci import validate

        c = self.load(self.one_id(opts, "update"))
        if c.status() == STOPPED:
            raise PycontainError(f"container {c.id} is stopped")
        source = opts.get("resources")
        resources: dict[str, Any] = {}
        if source:
            text = sys.stdin.read() if source == "-" else _read_small(source, "--resources")
            try:
                resources = jsonfast.loads(text)
            except ValueError as e:
                raise UsageError(f"--resources: not JSON: {e}") from None
        for flag, (section, key) in {"memory": ("memory", "limit"), "memory-reservation": ("memory", "reservation"),
                                     "memory-swap": ("memory", "swap"), "cpu-period": ("cpu", "period"),
                                     "cpu-quota": ("cpu", "quota"), "cpu-share": ("cpu", "shares"),
                                     "pids-limit": ("pids", "limit")}.items():
            if opts.get(flag) is not None:
                try:
                    resources.setdefault(section, {})[key] = int(opts.get(flag))
                except ValueError:
                    raise UsageError(f"--{flag}: {opts.get(flag)!r} is not a number") from None
        if opts.get("cpuset-cpus"):
            resources.setdefault("cpu", {})["cpus"] = opts.get("cpuset-cpus")
        validate.check_resources(resources, "resources")
        linux = c.spec.setdefault("linux", {})
        base = ocispec.limits_from(linux.get("resources"))
        limits = ocispec.limits_from(resources, base)
        lock = c.lock()
        try:
            c.cgroup().apply(limits)
            merged = dict(linux.get("resources") or {})
            for key, value in resources.items():
                merged[key] = dict(merged.get(key) or {}, **value) if isinstance(value, dict) else value
            linux["resources"] = merged
            with open(f"{c.dir}/config.json", "w") as f:
                f.write(jsonfast.dumps(c.spec))
        finally:
            os.close(lock)
        return 0

    # ------------------------------------------------------------ exec

    def exec(self, opts: Options) -> int:
        from pycontain.oci import executor

        if not opts.args:
            raise UsageError("exec takes a container id (and, without --process, a command)")
        c = self.load(check_id(opts.args[0]))
        if c.status() not in (RUNNING, CREATED):
            raise PycontainError(f"cannot exec in a container that is {c.status()}")
        process = self._exec_process(c, opts)
        from pycontain import namespaces

        proc = executor.process_from(process)
        # An exec'd process is filtered like the container's own.
        executor.set_filter(proc, (c.spec.get("linux") or {}).get("seccomp"), self.seccomp_cache())
        detach = bool(opts.get("detach"))
        proc.oci = detach
        proc.preserve_fds = int(opts.get("preserve-fds") or 0)
        if opts.get("console-socket"):
            proc.console = _connect(opts.get("console-socket"))
        elif proc.tty and detach:
            raise UsageError("--tty with --detach needs --console-socket")
        pid = c.pid()
        kinds = tuple(executor.PROC_NS[ns["type"]] for ns in (c.spec.get("linux") or {}).get("namespaces") or ()
                      if ns["type"] not in ("pid", "user", "time"))
        kinds = tuple(sorted(kinds, key=lambda k: k == "mnt"))
        joiner = namespaces.Joiner(pid, kinds)
        cg = c.cgroup()
        try:
            namespaces.enter_pid_namespace(pid)
            child = namespaces.spawn(0, joiner, proc)
            try:
                cg.add(child.pid)
                child.go()
                child.wait_exec()
            except BaseException:
                _kill_and_reap(child.pid)
                raise
        finally:
            joiner.close()
            if proc.console is not None:
                proc.console.close()
        if opts.get("pid-file"):
            _write_pid_file(opts.get("pid-file"), child.pid)
        if detach:
            return 0
        return _attend(child)

    def _exec_process(self, c: Container, opts: Options) -> dict[str, Any]:
        from pycontain.oci import validate

        if opts.get("process"):
            try:
                process = jsonfast.loads(_read_small(opts.get("process"), "--process"))
            except ValueError as e:
                raise UsageError(f"--process: not JSON: {e}") from None
        else:
            if len(opts.args) < 2:
                raise UsageError("exec needs a command (or --process FILE)")
            process = dict(c.spec.get("process") or {}, args=opts.args[1:], terminal=bool(opts.get("tty")))
            process["env"] = list(process.get("env") or ()) + list(opts.get("env") or ())
            if opts.get("cwd"):
                process["cwd"] = opts.get("cwd")
            if opts.get("user"):
                uid, _, gid = opts.get("user").partition(":")
                if not uid.isdigit() or (gid and not gid.isdigit()):
                    raise UsageError(f"--user {opts.get('user')!r}: expected UID[:GID]")
                process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
            if opts.get("additional-gids"):
                process.setdefault("user", {})["additionalGids"] = [int(g) for g in opts.get("additional-gids")]
            if opts.get("cap"):
                caps = {k: list(v) for k, v in (process.get("capabilities") or {}).items()}
                for cap in opts.get("cap"):
                    for kind in ("bounding", "effective", "permitted"):
                        caps.setdefault(kind, []).append(cap)
                process["capabilities"] = caps
            if opts.get("no-new-privs"):
                process["noNewPrivileges"] = True
            process.setdefault("cwd", "/")
        if not isinstance(process, dict):
            raise UsageError("--process: expected a JSON object")
        process.setdefault("cwd", "/")
        validate.check_process(process, "process")
        return process

    # ------------------------------------------------------------ spec / features

    def spec(self, opts: Options) -> int:
        from pycontain.oci import validate

        if opts.get("rootless"):
            raise UsageError("--rootless: pycontain-oci runs containers as root only")
        path = os.path.join(opts.get("bundle") or ".", "config.json")
        if os.path.exists(path):
            raise PycontainError(f"{path} exists: remove it first")
        import json

        with open(path, "x") as f:
            json.dump(validate.default_spec(), f, indent=2)
            f.write("\n")
        return 0

    def features(self, opts: Options) -> int:
        from pycontain import oci as ocispec

        import json

        from pycontain.mounts import MOUNT_FLAGS
        from pycontain.oci import CAPABILITIES

        print(json.dumps({
            "ociVersionMin": "1.0.0", "ociVersionMax": ocispec.OCI_VERSION,
            "hooks": list(ocispec.HOOKS),
            "mountOptions": sorted([*MOUNT_FLAGS, "bind", "rbind", "private", "rprivate", "shared", "rshared",
                                    "slave", "rslave", "unbindable", "runbindable"]),
            "linux": {
                "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
                "capabilities": [f"CAP_{name}" for name in CAPABILITIES],
                "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
                "seccomp": {"enabled": False}, "apparmor": {"enabled": False}, "selinux": {"enabled": False},
            },
            "annotations": {"org.pycontain.version": VERSION},
        }, indent=2))
        return 0


# ---------------------------------------------------------------- small helpers

class _Undo:
    def __init__(self) -> None:
        self.steps: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def push(self, fn: Callable[..., Any], *args: Any) -> None:
        self.steps.append((fn, args))

    def forget(self) -> None:
        self.steps = []

    def run(self) -> None:
        while self.steps:
            fn, args = self.steps.pop()
            try:
                fn(*args)
            except Exception as e:  # noqa: BLE001 - the original error is what the caller reports
                warn(f"cleanup: {e}")


def _attend(child: Any) -> int:
    """A foreground `run` or `exec`: pass our signals on to the process, relay its terminal if this
    process made one, and wait for it; its exit code as a shell reports it."""
    from pycontain import namespaces

    def forward(signum: int, _frame: object) -> None:
        _signal(child.pid, signum)

    for signum in namespaces.FORWARDED:
        signal.signal(signum, forward)
    if child.master_fd is not None:
        from pycontain import console
        from pycontain.stdio import FdSink

        console.relay(child.master_fd, 0, FdSink(1))
    _, status = os.waitpid(child.pid, 0)
    return namespaces.exit_code(status)


def _close_fifo(proc: Any) -> None:
    if proc.exec_fifo is not None:
        os.close(proc.exec_fifo)
        proc.exec_fifo = None


def read_bundle(bundle: str) -> dict[str, Any]:
    from pycontain import oci as ocispec
    from pycontain.oci import validate

    path = f"{bundle}/config.json"
    text = _read_small(path, "the bundle's config.json")
    try:
        spec = jsonfast.loads(text)
    except ValueError as e:
        raise ocispec.SpecError(f"{path}: not valid JSON: {e}") from None
    return validate.check(spec)


def _read_small(path: str, what: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {e.strerror}") from None
    try:
        if not os.path.isfile(f"/proc/self/fd/{fd}"):
            raise UsageError(f"{what} {path} is not a regular file")
        data = os.read(fd, MAX_CONFIG + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG:
        raise UsageError(f"{what} {path} is larger than {MAX_CONFIG >> 20} MiB")
    return data.decode("utf-8", "replace")


def _connect(path: str) -> Any:
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise PycontainError(f"cannot connect to --console-socket {path}: {e.strerror}") from None
    return sock


def _write_pid_file(path: str, pid: int) -> None:
    """Written to a temp file in the same directory and renamed: the caller never reads half of it."""
    tmp = f"{os.path.dirname(os.path.abspath(path))}/.{os.path.basename(path)}.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _signal(pid: int, signum: int) -> None:
    if pid <= 0:
        return
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _kill(pid: int) -> None:
    _signal(pid, signal.SIGKILL)


def _kill_and_reap(pid: int) -> None:
    _signal(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _rmtree(path: str) -> None:
    from pycontain.state import rmtree

    rmtree(path)


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def parse_signal(text: str) -> int:
    """9, KILL, SIGKILL (any case), as runc accepts them."""
    if text.isdigit():
        value = int(text)
        if not 0 < value < 65:
            raise UsageError(f"invalid signal {text!r}")
        return value
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    found = getattr(signal, name, None)
    if not isinstance(found, int) or name.startswith("SIG_"):
        raise UsageError(f"invalid signal {text!r}")
    return found


_log: dict[str, Any] = {"path": None, "format": "text"}


def warn(message: str) -> None:
    _emit("warning", message)


def _emit(level: str, message: str) -> None:
    if level == "error" or _log["path"] is None:
        print(f"pycontain-oci: {message}", file=sys.stderr)
    if _log["path"]:
        stamp = _now()
        if _log["format"] == "json":
            line = jsonfast.dumps({"level": level, "msg": message, "time": stamp})
        else:
            line = f'time="{stamp}" level={level} msg={jsonfast.dumps(message)}'
        try:
            with open(_log["path"], "a") as f:
                f.write(line + "\n")
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # No cyclic GC: after clone it would copy every page it walks; nothing here makes cycles worth it.
    gc.disable()
    try:
        glob = parse(argv, GLOBAL_OPTS, stop_at_positional=True)
        _log["path"] = glob.get("log")
        fmt = glob.get("log-format") or "text"
        if fmt not in ("text", "json"):
            raise UsageError(f"invalid --log-format {fmt!r}: use text or json")
        _log["format"] = fmt
        if glob.get("debug"):
            from pycontain import explain

            explain.enabled = True
        if glob.get("version"):
            print(f"pycontain-oci version {VERSION}\nspec: 1.0.2")
            return 0
        if glob.get("help") or not glob.args:
            print(USAGE, end="")
            return 0 if glob.get("help") else 125
        command, rest = glob.args[0], glob.args[1:]
        if command not in COMMAND_OPTS:
            raise UsageError(f"unknown command {command!r} (see pycontain-oci --help)")
        opts = parse(rest, COMMAND_OPTS[command], stop_at_positional=command == "exec")
        if command == "exec" and opts.args:
            # exec ID [ARGS...]: flags may still come between the id and the command
            more = parse(opts.args[1:], COMMAND_OPTS["exec"], stop_at_positional=True)
            opts.values.update(more.values)
            opts.args = [opts.args[0], *more.args]
        if command in ("spec", "features"):
            rt = Runtime.__new__(Runtime)
        else:
            rt = Runtime(glob)
        handler = getattr(rt, {"ls": "list"}.get(command, command))
        code: int = handler(opts)
        return code
    except PycontainError as e:
        _emit("error", str(e))
        return e.exit_code
    except OSError as e:
        _emit("error", f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
        return 125
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    """main(), then leave without interpreter finalization, as `pycontain` does (errors.leave)."""
    leave(main())
