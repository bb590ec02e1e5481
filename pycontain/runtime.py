"""The container lifecycle as step lists: create, run, start, exec, stop, kill, rm, wait, gc.

`run` reads like the lesson it teaches:

    resolve image -> record + name -> cgroup -> clone(new namespaces) -> [child: rootfs, hostname,
    privileges, execve] -> parent: wait (or hand over to a monitor with -d) -> release in reverse order

Every host object is released by an ExitStack callback pushed right after it is acquired. Mounts need
no callback: they live only in the container's mount namespace and vanish with it.
"""

from __future__ import annotations

import _signal
import os
import time

from pycontain import cgroups, events, explain, faults, namespaces, network, state, stdio, syscalls
from pycontain.config import merge_env
from pycontain.errors import ContainerNotFound, ContainerStateError, ImageNotFound, PycontainError, UsageError
from pycontain.images.store import Store
from pycontain.network import dns
from pycontain.oci import executor
from pycontain import oci as ocispec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pycontain.config import ContainerConfig
    from pycontain.state import Paths, Record

_ADJECTIVES = ("brave", "calm", "eager", "fond", "keen", "lucid", "merry", "quiet", "swift", "tidy", "vivid", "wise")
_NOUNS = ("otter", "heron", "lynx", "maple", "comet", "delta", "falcon", "harbor", "kernel", "pixel", "quartz", "tulip")


class _Undo:
    """contextlib.ExitStack's callback() and unwinding, without its imports.

    `import contextlib` pulls in collections and functools: ~4.5 ms of a start that has to beat runc's
    ~23 ms on the reference VM. Same contract: callbacks run last-in first-out; on failure the original
    error propagates and a cleanup error is attached to it as __context__, never swallowed silently.
    """

    def __init__(self) -> None:
        self._callbacks: list[tuple[Any, tuple[Any, ...]]] = []

    def callback(self, fn: Any, *args: Any) -> None:
        self._callbacks.append((fn, args))

    def __enter__(self) -> _Undo:
        return self

    def forget(self) -> None:
        """Everything succeeded and is kept: drop the callbacks without running them."""
        self._callbacks = []

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        pending = exc
        while self._callbacks:
            fn, args = self._callbacks.pop()
            try:
                fn(*args)
            except BaseException as cleanup_error:  # noqa: BLE001 - re-raised below, chained
                if pending is not None and cleanup_error is not pending:
                    cleanup_error.__context__ = pending
                pending = cleanup_error
        if pending is not None and pending is not exc:
            raise pending


def _exit_stack() -> _Undo:
    return _Undo()


# ---------------------------------------------------------------- create

def create(paths: Paths, cfg: ContainerConfig, starting: bool = True) -> tuple[Record, int]:
    """Resolve the image and write the container's record. Returns the record and its held lock fd.

    starting=False is `pycontain create`: the record stays "created" until `start`. A record left
    "starting" with no lock holder belongs to a `run` that was killed, which `gc` may finish off.
    """
    own_userns = _check_userns(cfg)
    joined: dict[str, Any] = {}
    if cfg.pid or cfg.ipc or cfg.network.startswith("container:"):  # another container's namespaces
        cfg, joined = ocispec.join_targets(paths, cfg)
    image = _image_for(Store(paths), cfg)
    cid = os.urandom(32).hex()
    state.ensure_dirs(paths)
    rec = state.Record(paths, cid)
    name = cfg.name or f"{_ADJECTIVES[int(cid[0:2], 16) % 12]}_{_NOUNS[int(cid[2:4], 16) % 12]}_{cid[4:8]}"
    with _exit_stack() as undo:
        # Each step's undo is pushed right after the step: a failure anywhere (a network that cannot be
        # set up, a full disk) unwinds exactly what was made, and one failing undo does not skip the rest.
        os.mkdir(rec.dir, 0o700)
        undo.callback(state.rmtree, rec.dir)
        lock_fd = rec.acquire()
        undo.callback(os.close, lock_fd)
        state.reserve_name(paths, name, cid)
        undo.callback(state.release_name, paths, name, cid)
        if cfg.cidfile:  # as Docker: refused if it exists (another container's, maybe), removed if create fails
            try:
                fd = os.open(cfg.cidfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                raise UsageError(f"container ID file found, make sure the other container isn't running or delete "
                                 f"{cfg.cidfile}") from None
            undo.callback(os.unlink, cfg.cidfile)
            with open(fd, "w") as f:
                f.write(cid)
        lease = None
        if own_userns:  # --userns=auto: its own uid range (userns.py is loaded only then)
            from pycontain import userns

            lease = userns.allocate(paths, cid)
            undo.callback(userns.release, paths, cid)
        faults.phase("run.record")
        img_cfg = image.config.get("config") or {}
        if (img_cfg.get("StopSignal") and cfg.stop_signal is None) or cfg.healthcheck or img_cfg.get("Healthcheck"):
            from pycontain.config import merge_healthcheck

            # What the image says, written into the container's own config once: stop and the monitor
            # need not read the image again (it may even be removed meanwhile).
            cfg = cfg.replace(stop_signal=cfg.stop_signal or img_cfg.get("StopSignal"),
                              healthcheck=merge_healthcheck(img_cfg.get("Healthcheck"), cfg.healthcheck))
        if img_cfg.get("Labels") and isinstance(img_cfg["Labels"], dict):  # Config.Labels: the image's, then --label
            cfg = cfg.replace(labels={**img_cfg["Labels"], **cfg.labels})
        if "network" in joined:  # its name is the other container's, as with Docker
            resolved = cfg.replace(hostname=joined["network"].resolved.hostname).with_image_defaults(
                image.config, rec.short_id)
        else:
            resolved = cfg.with_image_defaults(image.config, rec.short_id)
        if joined or cfg.group_add:
            resolved = resolved.replace(
                joins={kind: other.dir for kind, other in joined.items()},
                ids=ocispec.image_ids(list(image.layers), resolved.user, cfg.group_add) if cfg.group_add else None)
        undo.callback(state.rmtree, rec.storage)
        for sub in ("upper", "work", "rootfs", "etc"):
            os.makedirs(f"{rec.storage}/{sub}", 0o755)
        faults.phase("run.storage")
        volumes = None
        if cfg.volumes_from or (image.config.get("config") or {}).get("Volumes") or any(
                m.kind == "volume" for m in cfg.mounts):  # volumes.py is loaded only for a container with one
            from pycontain import volumes as vols

            cfg, volumes = vols.prepare(paths, cfg, image.config, image.layers, rec, undo, lease)
            faults.phase("run.volumes")
        if cfg.publish_all:  # -P: every exposed port (the image's, --expose) not published by -p, on a free one
            from pycontain.config import PortMapping

            given = {(p.container_port, p.protocol) for p in cfg.ports}
            exposed = dict.fromkeys([*(img_cfg.get("ExposedPorts") or {}), *cfg.expose])
            more = [PortMapping(container_port=int(k.partition("/")[0]), protocol=k.partition("/")[2] or "tcp")
                    for k in exposed if k.partition("/")[0].isdigit() and k.partition("/")[2] in ("", "tcp", "udp")]
            net = network.prepare(paths, cid, name, resolved.hostname, cfg.replace(
                ports=cfg.ports + tuple(p for p in more if (p.container_port, p.protocol) not in given)))
        else:
            net = network.prepare(paths, cid, name, resolved.hostname, cfg)
        undo.callback(network.release, paths, net, cid)
        gateway = (net or {}).get("gateway") or (network.host_gateway(paths) if any(
            h.endswith(":host-gateway") for h in cfg.add_hosts) else "")
        etc_files = dns.write_files(f"{rec.storage}/etc", resolved.hostname, cfg=cfg, gateway=gateway)
        etc_files.update((net or {}).get("etc_files", {}))
        if "network" in joined:  # its hostname, hosts and resolv.conf files too
            etc_files.update(joined["network"].etc_files)
        if lease is not None:
            userns.prepare_storage(rec.storage, lease)
        meta = {
            "id": cid, "name": name, "created": state.now(), "image": image.ref, "image_id": image.id,
            "layers": list(image.layers), "config": cfg.to_json(), "resolved": resolved.to_json(),
            "etc_files": etc_files, "network": net, "userns": lease.to_json() if lease else None,
        }
        state.atomic_write_json(f"{rec.dir}/config.json", meta, durable=False)
        if cfg.restart:  # a durable copy (/var/lib): `start --all-restartable` brings it back after a reboot
            state.atomic_write_json(_boot_copy(rec), meta)
        state.atomic_write_json(f"{rec.dir}/state.json",
                                {"status": state.STARTING if starting else state.CREATED}, durable=False)
        undo.forget()  # made: from here on the record is the container's, removed by `rm`
    if volumes is not None:
        volumes.commit(paths)  # its volumes are the record's now; `volume rm` may look (and refuse)
    faults.phase("run.created")
    events.container(rec, "create")
    explain.say(f"record {rec.dir} (name {name}); image {image.ref} with {len(image.layers)} layer(s)")
    return rec, lock_fd


def _check_userns(cfg: ContainerConfig) -> bool:
    """Whether the container gets a user namespace of its own (--userns=auto, or the config's default),
    and what that cannot be combined with, refused before anything is made, as Docker refuses it under
    userns-remap."""
    from pycontain.config import mode

    if mode(cfg.security.userns) != "auto":
        return False
    if cfg.security.privileged:
        raise UsageError("--privileged needs the host's user ids: add --userns=host (in a user namespace of its "
                         "own the container's root has no power over the host, so nothing privileged would work)")
    if cfg.runtime:
        raise UsageError("--userns=auto needs pycontain's own executor (it idmaps the image layers); with "
                         "--runtime add --userns=host")
    return True


def _image_for(store: Store, cfg: ContainerConfig) -> Any:
    return image_for(store, cfg.image, cfg.pull)


def image_for(store: Store, ref: str, policy: str) -> Any:
    """The pull policy of `run` and `create` (--pull, PYCONTAIN_PULL), decided here and nowhere else:

        missing   use the stored image; pull it only if it is not there (Docker's default)
        never     use the stored image or fail
        always    pull first (an up-to-date image downloads only its manifest)

    The store never needs the pull code to read an image, and the pull code (http.client, ssl,
    hashlib ...) is imported only when a pull really happens.
    """
    if policy == "never":
        return store.resolve(ref)
    if policy == "missing":
        try:
            return store.resolve(ref)
        except ImageNotFound:
            pass
    elif policy != "always":
        raise UsageError(f"invalid --pull {policy!r}: use missing, never or always")
    from pycontain.images.pull import pull_for_run

    return pull_for_run(store, ref)


# ---------------------------------------------------------------- run / start

def run(paths: Paths, cfg: ContainerConfig, before_start: Any = None) -> int:
    """Foreground: create, supervise until exit, return the container's exit code. before_start(rec):
    a step between create and start (compose joins a service's other networks there)."""
    rec, lock_fd = create(paths, cfg)
    try:
        if before_start is not None:
            before_start(rec)
        return supervise(rec)
    finally:
        if cfg.remove:
            _remove(rec, volumes=True)
        os.close(lock_fd)


def run_detached(paths: Paths, cfg: ContainerConfig, before_start: Any = None) -> Record:
    """-d: create, hand the container to a monitor, return once its command runs."""
    rec, lock_fd = create(paths, cfg)
    try:
        if before_start is not None:
            try:
                before_start(rec)
            except BaseException:
                os.close(lock_fd)
                remove(paths, rec.id, force=True, volumes=True)
                raise
        start_detached(rec, lock_fd)
    except PycontainError:
        if cfg.remove:
            # The monitor has exited (the report pipe is closed), maybe by SIGKILL before it unwound: its
            # cgroup and port rules go first, since once the record is gone nothing (not gc) finds them.
            _release_kernel_objects(rec)
            _remove(rec, volumes=True)
        raise
    return rec


def start(paths: Paths, ref: str, attach_fd: int | None = None) -> Record:
    """attach_fd (taken over: closed on every path): `start -a`'s end of a socket pair, which the monitor
    serves as its first attach client."""
    try:
        rec = state.find(paths, ref)
        try:
            lock_fd = rec.acquire()
        except BlockingIOError:
            if attach_fd is not None:
                os.close(attach_fd)
            return rec  # already running: like `docker start`, nothing to do
        if rec.read_state().status == state.RUNNING:  # its supervisor was killed: clean up first
            _finish_dead(rec)
        if rec.config.restart:  # started by the user: its restart policy applies again, counted from 0
            _forget_user_stop(rec)
            rec.set_state(restart_count=0)
    except BaseException:
        if attach_fd is not None:
            os.close(attach_fd)
        raise
    start_detached(rec, lock_fd, attach_fd)
    return rec


def start_detached(rec: Record, lock_fd: int, attach_fd: int | None = None) -> None:
    """Fork a monitor that supervises the container after this CLI exits, and wait for its report.
    attach_fd (taken over): an attach client the monitor serves from the container's first output on."""
    try:
        report_r, report_w = os.pipe()
    except BaseException:
        if attach_fd is not None:
            os.close(attach_fd)
        raise
    pid = os.fork()
    if pid == 0:
        # The monitor: whatever happens below (even a failing --rm removal), it ends here, in
        # os._exit, and never unwinds into the CLI code that forked it.
        code = 125
        try:
            os.close(report_r)
            os.setsid()  # no terminal signals from the session that started it
            try:
                started = time.monotonic()
                exit_code = supervise(rec, report_fd=report_w, attach_fd=attach_fd)
                if _restart_policy(rec):  # read again: `update --restart` may have changed it meanwhile
                    _restart_loop(rec, exit_code, started)
                code = 0
            except BaseException as e:  # noqa: BLE001 - reported to the CLI, which maps it to an exit code
                code = getattr(e, "exit_code", 125)
                # An OSError worded as the CLI words its own ("No space left on device: FILE"), not "[Errno 28] ...".
                text = f"{e.strerror}: {e.filename}" if isinstance(e, OSError) and e.strerror and e.filename else e
                try:
                    os.write(report_w, f"{code}\t{text}".encode())
                except OSError:
                    pass
            finally:
                if rec.config.remove:
                    _remove(rec, volumes=True)
        finally:
            os._exit(code)
    os.close(report_w)
    if attach_fd is not None:
        os.close(attach_fd)  # the monitor's now
    os.close(lock_fd)  # the monitor holds the lock from now on
    report = b""
    while chunk := os.read(report_r, 4096):
        report += chunk
    os.close(report_r)
    if report != b"ok":
        from pycontain.errors import CommandNotExecutable, CommandNotFound

        code_text, _, message = report.decode(errors="replace").partition("\t")
        code = int(code_text) if code_text.isdigit() else 125
        raise {126: CommandNotExecutable, 127: CommandNotFound}.get(code, PycontainError)(
            message or "the container monitor died before the container started")


def supervise(rec: Record, report_fd: int | None = None, detached: bool | None = None,
              attach_fd: int | None = None) -> int:
    """Start the container's process and stay with it until it exits; returns its exit code.

    With report_fd (a detached monitor), "ok" is written there once the command runs, and this
    process then lets go of the caller's terminal. A detached monitor serves `attach` (attach.py);
    attach_fd is a client connected already (`start -a`).
    """
    try:
        return _supervise(rec, report_fd, report_fd is not None if detached is None else detached, attach_fd)
    except BaseException as e:
        # Any failure after the record said "starting" (a network that cannot attach, a spec the kernel
        # refuses, Ctrl-C) leaves it exited with that error, never stuck in "starting".
        try:
            if rec.read_state().status in (state.STARTING, state.CREATED, state.RUNNING):
                rec.set_state(status=state.EXITED, exit_code=getattr(e, "exit_code", 125), finished_at=state.now(),
                              error=str(e) or type(e).__name__)
        except (OSError, ValueError):
            pass  # the record itself is gone (removed meanwhile) or damaged: nothing to mark
        raise


def seccomp_cache(paths: Paths) -> str:
    """Where compiled seccomp filters are kept (see oci/seccomp.compile_cached): beside the images,
    so they outlive a reboot; one small file per profile and capability set."""
    return f"{paths.storage}/seccomp"


def _supervise(rec: Record, report_fd: int | None, detached: bool, attach_fd: int | None = None) -> int:
    cfg, res = rec.config, rec.resolved
    log = None
    pipes = None
    server = None
    with _exit_stack() as undo:
        if attach_fd is not None:
            undo.callback(_close_unless_taken, attach_fd, lambda: server)
        # Docker's json-file log for every container but a foreground --rm one (removed at once, as
        # Docker removes its log: the foreground run keeps its start time and its splice relay).
        if getattr(cfg, "log_driver", "json-file") != "none" and (detached or not cfg.remove):
            from pycontain import logs

            log = logs.JsonLog(rec.log_path, cfg.log_max_size, cfg.log_max_files)
            undo.callback(log.close)
        if not cfg.tty:
            # -d -i keeps the container's stdin open (nothing writes to it yet), as `docker run -di` does.
            pipes = stdio.Pipes(keep_stdin_open=cfg.interactive)
            undo.callback(pipes.close)
        if cfg.mounts and any(m.kind == "volume" and m.options for m in cfg.mounts):
            from pycontain import volumes

            if any(volumes.DRIVER_MOUNT in m.options for m in cfg.mounts):  # a tmpfs-typed volume
                undo.callback(volumes.release, rec.paths, cfg, rec.id)
                volumes.acquire(rec.paths, cfg, rec.id)
        if cfg.runtime:
            # Another OCI runtime as the executor, driven through its runc command line.
            from pycontain.oci import external

            pid, master_fd = external.supervise(rec, cfg.runtime, pipes, undo)
            reaper = Reaper(pid)
            undo.callback(reaper.kill_and_reap)
            _forward_signals(pid, undo)
            cg = cgroups.for_container(rec.id)
        else:
            # The front end's whole decision, written down as a runtime spec; the executor carries it out.
            cache = seccomp_cache(rec.paths)
            spec = ocispec.container_spec(rec.id, cfg, res, rec.limits(), rec.storage, rec.layers, rec.etc_files,
                                          seccomp_cache=cache)
            if rec.meta().get("userns"):
                from pycontain import userns

                userns.apply(spec, rec.meta()["userns"])
            explain.say(f"runtime spec: {len(spec['mounts'])} mounts, {len(spec['linux']['namespaces'])} namespaces, "
                        f"{len(spec['process']['capabilities']['bounding'])} capabilities, the image's command: the "
                        "whole contract between the front end and the executor (pycontain-oci runs the same "
                        "document from a config.json)")
            if explain.enabled:  # counting the filter's syscalls is no work for a start nobody narrates
                filt = spec["linux"].get("seccomp")
                source = "--privileged" if cfg.security.privileged else f"profile {cfg.security.seccomp}"
                explain.say(f"seccomp {source}: " + (
                    f"{len(filt['syscalls'])} rules over {sum(len(r['names']) for r in filt['syscalls'])} syscalls "
                    "for this capability set, anything else fails with EPERM; compiled once by libseccomp and "
                    "kept, loaded with seccomp(2) right before execve" if filt else "no filter (unconfined)"))
            plan = executor.plan(spec, rec.storage, rec.id, seccomp_cache=cache)
            undo.callback(plan.close)
            proc = plan.process
            assert proc is not None
            proc.interactive = cfg.interactive
            proc.stdio = pipes.child if pipes else ()

            cg = executor.make_cgroup(plan)
            undo.callback(cg.remove)
            undo.callback(_release_freezer, rec.id)  # a v1 `pause` moved its processes into a freezer cgroup
            faults.phase("run.cgroup")
            child = executor.spawn(plan)
            pid = child.pid
            reaper = Reaper(pid)
            undo.callback(reaper.kill_and_reap)
            undo.callback(child.close)
            faults.phase("run.clone")
            _forward_signals(pid, undo)
            if pipes:
                pipes.close_child_ends()
            if rec.network:
                undo.callback(network.detach, rec.paths, rec.network, rec.id)
                network.attach(rec.paths, rec.network, pid)
                faults.phase("run.network")
            explain.say("  new PID, mount, UTS, IPC" + ("" if cfg.network == "host" else ", network")
                        + " namespaces: the command will be PID 1 and see only its own processes, mounts, "
                        "hostname" + ("" if cfg.network == "host" else " and network stack"))
            faults.phase("run.exec")
            child.go()
            try:
                child.wait_exec()
            except PycontainError:
                reaper.wait()
                raise
            master_fd = child.master_fd
        # Detached: listening before "ok", so an `attach` right after `run -d` finds the socket. A foreground
        # run serves attach too (Docker attaches to any running container), once its container has run
        # FOREGROUND_LISTEN_AFTER: importing _socket and binding costs ~0.2-0.3 ms `run --rm true` need not pay.
        from pycontain import attach

        server = attach.Server(rec, master_fd is not None, attach_fd,
                               None if detached else FOREGROUND_LISTEN_AFTER)
        undo.callback(server.close)
        rec.set_state(status=state.RUNNING, pid=pid, pid_start=state.proc_starttime(pid),
                      started_at=state.now(), finished_at=None, exit_code=None, error=None, oom_killed=False,
                      paused=False)
        if report_fd is not None:
            _let_go_of_caller(report_fd)
            # This monitor lives as long as the container: what setting it up allocated and freed goes
            # back to the kernel now (cyclic garbage too: pycontain runs with the collector off).
            # Measured: 13.0 -> 11.2 MiB of VmRSS for a plain detached monitor (with the attach server).
            import gc

            gc.collect()
            syscalls.malloc_trim()
        checker = None
        if detached and cfg.healthcheck:  # health.py is loaded only for a container with a check
            from pycontain import health

            checker = [health.start(rec, exec_)]
            undo.callback(_stop_checker, checker)
        faults.phase("run.running")
        events.container(rec, "start")
        code = _wait(master_fd, reaper, cfg.interactive and not detached, pipes, log, server, not detached)
        if checker:
            _stop_checker(checker)  # before the final state is written: its writes must not come after
        faults.phase("run.cleanup")
        oom = cg.oom_killed()
        if oom:
            events.container(rec, "oom")
        events.container(rec, "die", exitCode=str(code))
        if not cfg.remove:  # a --rm record is deleted next: no need to write its final state
            rec.set_state(status=state.EXITED, exit_code=code, finished_at=state.now(), oom_killed=oom, paused=False)
        else:
            _leave_exit_code(rec, code)
        explain.say(f"wait4({pid}) -> exit code {code}; releasing the cgroup, namespaces vanish with PID 1")
    return code


FOREGROUND_LISTEN_AFTER = 0.05  # seconds: see _supervise


def _close_unless_taken(fd: int, server: Any) -> None:
    """An attach client's fd that no Server took over (the container did not get that far)."""
    if server() is None:
        os.close(fd)


def _stop_checker(checker: list[int | None]) -> None:
    from pycontain import health

    pid, checker[0] = checker[0], None
    health.stop(pid)


def _let_go_of_caller(report_fd: int) -> None:
    """A detached monitor must not keep the caller's pipes open, or `$(pycontain run -d …)` would hang."""
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    explain.disable()
    os.write(report_fd, b"ok")
    os.close(report_fd)


class Reaper:
    """Waits for the child exactly once; on an error path, kills it first."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.status: int | None = None

    def wait(self) -> int:
        while self.status is None:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                status = 255 << 8
            self.status = status
        return self.status

    def kill_and_reap(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass
            self.wait()


def _forward_signals(pid: int, undo: _Undo) -> None:
    """From now until the undo stack unwinds, signals sent to pycontain go to the container instead.

    Installed right after clone: the container may run (and be signalled through us) before we have
    even read that its execve succeeded.
    """
    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in namespaces.FORWARDED:
        undo.callback(_signal.signal, signum, _signal.signal(signum, forward))


def _wait(master_fd: int | None, reaper: Reaper, attached_stdin: bool, pipes: stdio.Pipes | None,
          log: Any, server: Any = None, foreground: bool = True) -> int:
    """Relay the container's output (and the caller's input) until its process exits; its exit code.

    Detached: output goes to the log. In the foreground: to the caller, and into the log too when
    there is one. Either way to attached clients (server: the attach socket) too, and their input in;
    `exec` has no server and relays only to its caller."""
    stdin = 0 if attached_stdin else None
    out: Any
    err: Any
    if server is None:
        out, err = stdio.FdSink(1), stdio.FdSink(2)
        if pipes is not None:
            pipes.relay(reaper.pid, stdin, out, err)
        elif master_fd is not None:
            from pycontain import console

            console.relay(master_fd, stdin, out)
            os.close(master_fd)
        return namespaces.exit_code(reaper.wait())
    if foreground:
        out, err = stdio.FdSink(1), stdio.FdSink(2)
        if log is not None:
            out, err = stdio.Tee(out, log.sink("stdout")), stdio.Tee(err, log.sink("stderr"))
    elif log is None:
        from pycontain.logs import NullSink

        out = err = NullSink()
    else:
        out, err = log.sink("stdout"), log.sink("stderr")
    try:
        if master_fd is not None and foreground:
            from pycontain import console

            with console.terminal(master_fd, stdin):  # the caller's terminal raw, its size followed
                server.run(reaper.pid, master_fd, pipes, out, err, stdin)
        else:
            server.run(reaper.pid, master_fd, pipes, out, err, stdin)
    finally:
        if master_fd is not None:
            os.close(master_fd)
    code = namespaces.exit_code(reaper.wait())
    if log is not None:
        log.flush()  # before the clients hear it exited: `logs` right after `attach` has everything
    server.finish(code)
    return code


def live_pid(rec: Record) -> int | None:
    """The container's PID 1 on the host, if that exact process is still alive."""
    st = rec.read_state()
    if st.status != state.RUNNING or not st.pid:
        return None
    return st.pid if state.proc_starttime(st.pid) == st.pid_start else None


# ---------------------------------------------------------------- exec

def exec_(paths: Paths, ref: str, argv: list[str], env: list[str], workdir: str | None, user: str | None,
          tty: bool, interactive: bool) -> int:
    rec = state.find(paths, ref)
    status = rec.status()
    if status == state.PAUSED:
        raise ContainerStateError(f"container {rec.name} is paused: unpause it before exec")
    pid = live_pid(rec) if status.can_exec() else None
    if pid is None:
        raise ContainerStateError(f"container {rec.name} is not running; start it with `pycontain start {rec.name}`")
    res = rec.resolved
    # The container's own capabilities, no_new_privs and rlimits, through the same conversion as its init.
    spec_process = ocispec.process_spec(rec.config.security, list(argv), merge_env(list(res.env), env),
                                        workdir or res.workdir, tty)
    proc = executor.process_from(spec_process, {ocispec.USER_NAME: user if user is not None else res.user})
    proc.interactive = interactive
    cache = seccomp_cache(paths)  # an exec'd process is filtered like the container's own
    executor.set_filter(proc, ocispec.seccomp_spec(rec.config.security, cache), cache)
    cg = cgroups.for_container(rec.id)
    enter = namespaces.Joiner(pid)
    with _exit_stack() as undo:
        undo.callback(enter.close)
        pipes = None
        if not tty:
            pipes = stdio.Pipes(keep_stdin_open=interactive)
            undo.callback(pipes.close)
            proc.stdio = pipes.child
        namespaces.enter_pid_namespace(pid)
        faults.phase("exec.join")
        child = namespaces.spawn(0, enter, proc)
        reaper = Reaper(child.pid)
        undo.callback(reaper.kill_and_reap)
        undo.callback(child.close)
        _forward_signals(child.pid, undo)
        if pipes:
            pipes.close_child_ends()
        cg.add(child.pid)
        faults.phase("exec.exec")
        child.go()
        child.wait_exec()
        return _wait(child.master_fd, reaper, interactive, pipes, None)


# ---------------------------------------------------------------- stop / kill / rm / wait

# ---------------------------------------------------------------- restart policies

BACKOFF_FIRST = 0.1  # Docker's: 100 ms before the first restart, doubling each time, at most a minute,
BACKOFF_MAX = 60.0
BACKOFF_RESET = 10.0  # and back to 100 ms once the command has run this long


def _restart_loop(rec: Record, code: int, started: float) -> None:
    """The monitor of a detached container with --restart: run its command again when it exits, as
    the policy says, until the user stops it (stop, kill, rm -f leave the stopped-by-user mark).
    The policy is read again at each exit: `update --restart` changes it for the running container."""
    delay = BACKOFF_FIRST
    while True:
        policy = _restart_policy(rec) or {}
        name, max_retries = policy.get("name"), int(policy.get("max_retries") or 0)
        if not name:
            return
        count = rec.read_state().restart_count
        if _stopped_by_user(rec) or (name == "on-failure" and (code == 0 or (max_retries and count >= max_retries))):
            return
        if time.monotonic() - started >= BACKOFF_RESET:
            delay = BACKOFF_FIRST
        rec.set_state(restarting=True)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:  # a stop meanwhile ends the wait at once (well, within 50 ms)
            time.sleep(min(0.05, max(deadline - time.monotonic(), 0)))
            if _stopped_by_user(rec):
                rec.set_state(restarting=False)
                return
        rec.set_state(restarting=False, restart_count=count + 1, status=state.STARTING)
        delay = min(delay * 2, BACKOFF_MAX)
        started = time.monotonic()
        try:
            code = supervise(rec, detached=True)
        except PycontainError as e:  # it could not start this time (supervise marked it exited): try again later
            code = e.exit_code


def _restart_policy(rec: Record) -> dict[str, Any] | None:
    """The container's restart policy as its record says now (not as the monitor's cached copy of the
    record has it): `update --restart` rewrites it while the monitor runs. None once the record is gone."""
    try:
        policy = state.read_json(f"{rec.dir}/config.json")["config"].get("restart")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return policy if isinstance(policy, dict) else None


def _boot_copy(rec: Record) -> str:
    return f"{rec.storage}/restart-record.json"


def start_restartable(paths: Paths) -> list[str]:
    """`start --all-restartable`, the boot hook: what Docker's daemon does when it starts. After a reboot
    the records (/run, a tmpfs) are gone: each container with a restart policy gets its record back from
    the durable copy beside its layers (a fresh network lease, its name), then every `always` container
    and every `unless-stopped` one its user did not stop is started. Safe to run at any time: running
    containers are left alone. Returns the names started."""
    state.ensure_dirs(paths)
    for cid in sorted(_ids_with_storage(paths)):
        rec = state.Record(paths, cid)
        if os.path.exists(rec.dir) or not os.path.exists(_boot_copy(rec)):
            continue
        try:
            _restore(rec)
        except (PycontainError, OSError, ValueError) as e:
            import sys

            print(f"pycontain: cannot restore container {cid[:12]}: {e}", file=sys.stderr)
    started = []
    for rec in state.all_records(paths):
        try:
            policy = (rec.config.restart or {}).get("name")
            if policy == "always" or (policy == "unless-stopped" and not _stopped_by_user(rec)):
                if policy == "always":
                    _forget_user_stop(rec)
                if not rec.is_locked():
                    start(paths, rec.id)
                    started.append(rec.name)
        except (PycontainError, OSError, ValueError) as e:
            import sys

            print(f"pycontain: cannot start container {rec.short_id}: {e}", file=sys.stderr)
    return started


def _restore(rec: Record) -> None:
    """A record made again from its durable copy, as an exited container."""
    meta = state.read_json(_boot_copy(rec))
    if meta.get("userns"):
        raise PycontainError("its --userns=auto id range was not kept across the reboot; remove and run it again")
    os.mkdir(rec.dir, 0o700)
    try:
        state.reserve_name(rec.paths, meta["name"], rec.id)
        from pycontain.config import ContainerConfig

        cfg = ContainerConfig.from_json(meta["config"])
        hostname = meta["resolved"]["hostname"]
        net = network.prepare(rec.paths, rec.id, meta["name"], hostname, cfg)
        etc_files = dns.write_files(f"{rec.storage}/etc", hostname)
        etc_files.update((net or {}).get("etc_files", {}))
        meta.update(network=net, etc_files=etc_files)
        state.atomic_write_json(f"{rec.dir}/config.json", meta, durable=False)
        state.atomic_write_json(f"{rec.dir}/state.json", {"status": state.EXITED, "exit_code": 0,
                                                          "error": "restored after a reboot"}, durable=False)
    except BaseException:
        state.rmtree(rec.dir)
        raise


def _stop_mark(rec: Record) -> str:
    # Beside its layers (/var/lib), not in the record (/run): `start --all-restartable` at boot must
    # still see that an unless-stopped container was stopped by its user.
    return f"{rec.storage}/stopped-by-user"


def _stopped_by_user(rec: Record) -> bool:
    return os.path.exists(_stop_mark(rec))


def _mark_user_stop(rec: Record) -> None:
    """stop, kill or rm -f of a container with a restart policy: its monitor must not bring it back.
    A file of its own, not a state.json key: the monitor rewrites state.json, and would lose it."""
    try:
        os.close(os.open(_stop_mark(rec), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600))
    except FileNotFoundError:
        pass  # its storage is gone: so is the container


def _forget_user_stop(rec: Record) -> None:
    try:
        os.unlink(_stop_mark(rec))
    except FileNotFoundError:
        pass


def _await_restarting(rec: Record) -> int | None:
    """A container whose monitor is between two runs (backing off, or starting it again) after a user
    stop was marked, or one still starting (`inspect` shows it running, as Docker has no such state):
    the pid of the command once it runs (to signal), or None once its supervisor let go."""
    while rec.is_locked():
        pid = live_pid(rec)
        if pid is not None:
            return pid
        time.sleep(0.02)
    return None


def stop(paths: Paths, ref: str, timeout: float | None = None, signum: int | None = None) -> Record:
    """`stop`: the stop signal (signum, else --stop-signal or the image's StopSignal, else SIGTERM), then
    SIGKILL after timeout seconds (None: the container's --stop-timeout, else 10; negative: never)."""
    rec = state.find(paths, ref)
    cfg = rec.config
    if timeout is None:
        timeout = 10.0 if cfg.stop_timeout is None else float(cfg.stop_timeout)
    if signum is None:
        from pycontain.config import parse_signal

        signum = parse_signal(cfg.stop_signal) if cfg.stop_signal else _signal.SIGTERM
    if cfg.restart:
        _mark_user_stop(rec)
    status = rec.status()
    pid = live_pid(rec) if status.can_kill() else None
    if pid is None and (cfg.restart or status == state.STARTING):  # starting: its process is on its way
        pid = _await_restarting(rec)
    if pid is None:
        return rec
    if status == state.PAUSED:
        _thaw(rec)  # a frozen process would not act on the signal (on cgroup v1 not even on SIGKILL)
    events.container(rec, "kill", signal=str(signum))
    _send(pid, signum)
    explain.say(f"kill({pid}, {signum}); SIGKILL after {timeout:g}s")
    deadline = time.monotonic() + (timeout if timeout >= 0 else float("inf"))
    while rec.is_locked() and time.monotonic() < deadline:
        time.sleep(0.02)
    if rec.is_locked():
        _send(pid, _signal.SIGKILL)
        rec.wait_unlocked()
    events.container(rec, "stop")
    return rec


def kill(paths: Paths, ref: str, signum: int) -> Record:
    rec = state.find(paths, ref)
    if rec.config.restart:
        _mark_user_stop(rec)
    status = rec.status()
    pid = live_pid(rec) if status.can_kill() else None
    if pid is None and (rec.config.restart or status == state.STARTING):
        pid = _await_restarting(rec)
    if pid is None:
        raise ContainerStateError(f"container {rec.name} is not running")
    if status == state.PAUSED:
        _thaw(rec)
    events.container(rec, "kill", signal=str(signum))
    _send(pid, signum)
    return rec


def _send(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def remove(paths: Paths, ref: str, force: bool = False, volumes: bool = False) -> Record:
    """`rm`; volumes=True (`rm -v`) removes the container's anonymous volumes that no other one uses."""
    rec = state.find(paths, ref)
    try:
        removable = rec.status().can_remove()
    except state.DamagedRecord:
        if not force:
            raise
        removable = False  # its state.json cannot say whether it runs: -f stops whatever is in its cgroup
    # Not removable as it is: it runs, or a supervisor holds it (a `start` under way).
    if not removable or rec.is_locked():
        if not force:
            raise ContainerStateError(
                f"container {rec.name} is running: stop it first or use `pycontain rm -f {rec.name}`")
        try:
            if rec.config.restart:
                _mark_user_stop(rec)
        except (OSError, ValueError):
            pass
        try:
            pid = live_pid(rec)
            if pid is None and rec.config.restart:  # between two runs: its monitor may be starting it again
                pid = _await_restarting(rec)
        except state.DamagedRecord:
            pid = None
            cg = cgroups.for_container(rec.id)
            if cg.exists():
                cg.kill()
        if pid is not None:
            _thaw_if_frozen(rec.id)
            _send(pid, _signal.SIGKILL)
        rec.wait_unlocked()
        killed = True
    else:
        killed = False
    try:
        lock_fd = rec.acquire(blocking=True, create=False)  # nobody may start it while it is being removed
    except FileNotFoundError:
        if killed:  # a --rm container: its supervisor removed it once it died, as this rm asked
            return rec
        raise ContainerNotFound(f"no such container: {ref}") from None  # another rm removed it meanwhile
    try:
        if not os.path.exists(f"{rec.dir}/config.json"):  # ... while this one waited for the lock
            if killed:
                return rec
            raise ContainerNotFound(f"no such container: {ref}")
        _release_kernel_objects(rec)
        faults.phase("rm.kernel")
        _remove(rec, volumes)
    finally:
        os.close(lock_fd)
    return rec


def update(paths: Paths, ref: str, changes: dict[str, Any], restart: str | None = None) -> Record:
    """Change the limits of a container; a running one gets them at once (written to its cgroup).
    restart: a new --restart policy, kept in its record (and its boot copy); a running container's
    monitor reads it again when the container next exits."""
    from pycontain.config import parse_limits, parse_restart

    rec = state.find(paths, ref)
    if restart is not None:
        policy = parse_restart(restart)
        if policy is not None and rec.config.remove:
            raise UsageError(f"cannot give container {rec.name} a restart policy: it is removed when it exits (--rm)")
        meta = dict(rec.meta())
        meta["config"] = dict(meta["config"], restart=policy)
        state.atomic_write_json(f"{rec.dir}/config.json", meta, durable=False)
        if policy:  # `start --all-restartable` brings it back after a reboot
            state.atomic_write_json(_boot_copy(rec), meta)
            if rec.status() in (state.RUNNING, state.PAUSED):
                _forget_user_stop(rec)  # an old stop's mark must not cancel the policy given now
        else:
            try:
                os.unlink(_boot_copy(rec))
            except FileNotFoundError:
                pass
        rec._meta, rec._config = meta, None
        explain.say(f"restart policy of {rec.name}: {(policy or {}).get('name', 'no')}")
    if changes:
        limits = parse_limits(base=rec.limits(), **changes)
        if rec.status() in (state.RUNNING, state.PAUSED):
            cgroups.for_container(rec.id).apply(limits)
        rec.set_state(limits=limits.to_json())
        explain.say(f"wrote new limits to the cgroup of {rec.name}")
    events.container(rec, "update")
    return rec


def wait(paths: Paths, ref: str) -> int:
    """`wait`: block until the container's supervisor lets go of it, then its exit code. A --rm
    container's record is gone by then; its supervisor left the code in the lock file (read through
    the descriptor this waiter holds, which outlives the file's name)."""
    rec = state.find(paths, ref)
    try:
        fd = rec.acquire(blocking=True, create=False)
    except FileNotFoundError:
        raise ContainerNotFound(f"no such container: {ref}") from None
    try:
        if os.path.exists(f"{rec.dir}/config.json"):
            return rec.read_state().exit_code or 0
        text = os.pread(fd, 16, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else 0
    finally:
        os.close(fd)


def _leave_exit_code(rec: Record, code: int) -> None:
    """A --rm container's exit code, for `wait`ers that hold its lock file open while it is removed."""
    try:
        fd = os.open(rec.lock_path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.pwrite(fd, str(code).encode(), 0)
    except OSError:
        pass
    finally:
        os.close(fd)


def _release_kernel_objects(rec: Record) -> None:
    _release_cgroup(rec.id)
    net = _network_of(rec)
    if net:
        network.detach(rec.paths, net, rec.id)


def _release_cgroup(cid: str) -> None:
    _thaw_if_frozen(cid)  # a frozen v1 process does not die of SIGKILL until it is thawed
    cg = cgroups.for_container(cid)
    if cg.exists():
        cg.kill()
        cg.remove()
    _release_freezer(cid)


def _network_of(rec: Record) -> dict[str, Any] | None:
    try:
        return rec.network
    except (OSError, ValueError):
        return None


def _remove(rec: Record, volumes: bool = False) -> None:
    """Delete a container for good: its network lease and name, then its files; with volumes (rm -v,
    --rm), then its anonymous volumes, as Docker does (named volumes always stay)."""
    network.release(rec.paths, _network_of(rec), rec.id)
    try:
        mounts = rec.config.mounts
    except (OSError, ValueError):
        mounts = ()  # a damaged record: its volumes stay, for `volume prune`
    events.container(rec, "destroy")
    state.remove_record(rec)
    if mounts and any(m.kind == "volume" for m in mounts):
        from pycontain import volumes as vols

        vols.after_remove(rec.paths, rec.id, mounts, volumes)
    if os.path.isdir(rec.paths.userns):  # some container of this root had a uid range of its own
        from pycontain import userns

        userns.release(rec.paths, rec.id)


def _finish_dead(rec: Record) -> None:
    """A container whose supervisor was killed: its processes and cgroup go, and it is marked exited."""
    _release_kernel_objects(rec)
    if rec.config.runtime:
        from pycontain.oci import external

        external.gc(rec)
    rec.set_state(status=state.EXITED, exit_code=rec.read_state().exit_code or 137, finished_at=state.now(),
                  error="its pycontain supervisor was killed")
    events.container(rec, "die", exitCode=str(rec.read_state().exit_code))


# ---------------------------------------------------------------- pause / unpause

def pause(paths: Paths, ref: str) -> Record:
    """`pause`: every process of the container frozen by the cgroup freezer (SIGSTOP would be seen by
    them, and undone by any SIGCONT); state.json says "paused": true until `unpause`."""
    rec = state.find(paths, ref)
    status = rec.status()
    if status == state.PAUSED:
        raise ContainerStateError(f"container {rec.name} is already paused")
    if status != state.RUNNING or live_pid(rec) is None:
        raise ContainerStateError(f"container {rec.name} is not running")
    freeze(rec.id, True)
    rec.set_state(paused=True)
    if not rec.is_locked():  # it exited while being frozen: nothing is paused
        _thaw_if_frozen(rec.id)
        raise ContainerStateError(f"container {rec.name} is not running")
    events.container(rec, "pause")
    explain.say(f"froze the processes of {rec.name} with the cgroup freezer")
    return rec


def unpause(paths: Paths, ref: str) -> Record:
    rec = state.find(paths, ref)
    if rec.status() != state.PAUSED:
        raise ContainerStateError(f"container {rec.name} is not paused")
    _thaw(rec)
    events.container(rec, "unpause")
    return rec


def _thaw(rec: Record) -> None:
    freeze(rec.id, False)
    rec.set_state(paused=False)


def freeze(cid: str, frozen: bool) -> None:
    """Freeze (or thaw) every process of a container: `pause`, and whatever must see the container
    still (a commit) can use it too.

    On cgroup v2 its own cgroup has the freezer. On v1 pycontain's containers are not placed in the
    freezer hierarchy (one mkdir/rmdir less per start): the first pause makes freezer/pycontain-ID and
    moves the processes in, where they (and their children) stay, thawed, until the container ends; its
    supervisor, `rm -f` and `gc` remove that directory with the rest of its cgroup.
    """
    cg: Any = cgroups.for_container(cid, extra=("freezer",))
    if cg.version == 1 and frozen:
        where = cg.path("freezer")
        if where is None:
            raise PycontainError("this host has no cgroup freezer (v1 hierarchy `freezer`): cannot pause")
        try:
            os.mkdir(where, 0o755)
        except FileExistsError:
            pass
        # A process may fork while we move them (its child is born beside it): repeat until all are in.
        for _ in range(100):
            with open(f"{where}/cgroup.procs") as f:
                inside = {int(x) for x in f.read().split()}
            outside = [pid for pid in cg.procs() if pid not in inside]
            if not outside:
                break
            for pid in outside:
                try:
                    _cg_write(f"{where}/cgroup.procs", str(pid))
                except ProcessLookupError:
                    pass
        else:
            raise PycontainError("the container's processes kept forking: cannot pause it")
    elif cg.version == 1:
        where = cg.path("freezer")
        if where is None or not os.path.isdir(where):
            return  # never paused: nothing to thaw
    cg.freeze(frozen)


def _cg_write(path: str, value: str) -> None:
    from pycontain.cgroups.base import write

    write(path, value)


def _thaw_if_frozen(cid: str) -> None:
    """Thaw a container that may be paused (an error here must not stop a removal)."""
    try:
        freeze(cid, False)
    except (OSError, PycontainError):
        pass


def _release_freezer(cid: str) -> None:
    """rmdir the v1 freezer cgroup a `pause` made (a few exiting processes may still hold it: retried)."""
    if cgroups.detect() != 1:
        return
    from pycontain.cgroups.v1 import controller_roots

    root = controller_roots().get("freezer")
    if root is None:
        return
    where = f"{root}/pycontain-{cid}"
    for attempt in range(200):
        try:
            os.rmdir(where)
            return
        except FileNotFoundError:
            return
        except OSError:
            if attempt == 20:
                _thaw_if_frozen(cid)
                cgroups.for_container(cid, extra=("freezer",)).kill()
            time.sleep(0.005)


# ---------------------------------------------------------------- rename / restart / prune

def rename(paths: Paths, ref: str, new_name: str) -> Record:
    """`rename`: the new name is claimed first (one symlink, atomic), then written to the record, then
    the old one let go; a running container keeps running (nothing in it knows its name)."""
    from pycontain.config import validate_name

    new_name = validate_name(new_name)
    rec = state.find(paths, ref)
    old = rec.name
    if new_name == old:
        raise UsageError(f"container {old} is already named {new_name}")
    state.reserve_name(paths, new_name, rec.id)
    try:
        meta = dict(rec.meta())
        meta["name"] = new_name
        state.atomic_write_json(f"{rec.dir}/config.json", meta, durable=False)
        if os.path.exists(_boot_copy(rec)):
            state.atomic_write_json(_boot_copy(rec), meta)
    except BaseException:
        state.release_name(paths, new_name, rec.id)
        raise
    state.release_name(paths, old, rec.id)
    rec._meta = meta
    events.container(rec, "rename", oldName=old)
    return rec


def restart(paths: Paths, ref: str, timeout: float | None = None, signum: int | None = None) -> Record:
    """`restart`: stop (if it runs), then start in the background."""
    rec = stop(paths, ref, timeout, signum)
    return start(paths, rec.id)


def prune(paths: Paths) -> list[tuple[str, int]]:
    """`container prune`: remove every stopped container; (id, bytes of its storage) of each removed."""
    removed = []
    for rec in state.all_records(paths):
        try:
            if not rec.status().can_remove() or rec.is_locked():
                continue
            size = state.tree_size(rec.storage)
            remove(paths, rec.id)
        except (PycontainError, OSError, ValueError):
            continue  # started, removed or damaged meanwhile: not a stopped container to prune
        removed.append((rec.id, size))
    return removed


# ---------------------------------------------------------------- gc

def gc(paths: Paths) -> list[str]:
    """Release whatever a killed pycontain left behind. Safe to run at any time."""
    done = []
    records = state.all_records(paths)
    live = set()
    damaged = []
    for rec in records:
        try:
            lock_fd = rec.acquire()
        except BlockingIOError:
            live.add(rec.id)  # a live supervisor owns it
            continue
        try:
            try:
                os.unlink(f"{rec.dir}/attach.sock")  # a killed monitor's: nobody listens there any more
                done.append(f"removed the attach socket of container {rec.short_id}")
            except FileNotFoundError:
                pass
            try:
                rec.check_config()
            except state.DamagedRecord:
                # Nothing to start again: its cgroup goes now, what network.gc finds by its id next, and
                # the record after that (network.gc judges only ids that still have a record here).
                _release_cgroup(rec.id)
                damaged.append(rec)
                continue
            try:
                status = rec.read_state().status
            except state.DamagedRecord:
                _release_kernel_objects(rec)
                state.reset_state(rec, exit_code=125, finished_at=state.now(),
                                  error="its state record was damaged: gc reset it (the real exit code is lost)")
                done.append(f"reset the damaged state record of container {rec.short_id} (now exited)")
                status = state.EXITED
            if status in (state.RUNNING, state.STARTING) or cgroups.for_container(rec.id).exists():
                _finish_dead(rec)
                done.append(f"stopped orphaned container {rec.short_id}")
            if rec.config.remove and status != state.CREATED:  # `create --rm` waits for its `start`
                _remove(rec, volumes=True)
                done.append(f"removed container {rec.short_id} (--rm)")
            else:
                live.add(rec.id)
        finally:
            os.close(lock_fd)
    from pycontain.build import leftovers

    build_done, build_live = leftovers.gc(paths)  # a live build's RUN steps: storage without a record
    done += build_done
    live |= build_live
    done += network.gc(paths, live)
    for rec in damaged:
        state.rmtree(rec.storage)
        state.rmtree(rec.dir)  # its name is released below, as the name of a record that is gone
        done.append(f"removed container {rec.short_id}: its config.json was damaged")
    # Only this state root's containers: another root's cgroups (another user of the same host, a test
    # suite beside a real store) carry the same prefix, and are not ours to judge.
    for cid in _ids_with_storage(paths) - live:
        cg = cgroups.for_container(cid)
        if cg.exists():
            cg.kill()
            cg.remove()
            done.append(f"removed cgroup {cg.name}")
    done += _gc_files(paths, live)
    if os.path.isdir(f"{paths.storage}/volumes"):
        from pycontain import volumes

        done += volumes.gc(paths)  # after _gc_files: records of dead creates are gone by now
    from pycontain import userns

    done += userns.gc(paths)  # after _gc_files: the leases of the records it just removed go too
    done += [f"removed partial image data {p}" for p in Store(paths).gc_temp()]
    done += Store(paths).repair_refs()
    return done


def _ids_with_storage(paths: Paths) -> set[str]:
    try:
        return set(os.listdir(f"{paths.storage}/containers"))
    except FileNotFoundError:
        return set()


def _gc_files(paths: Paths, live: set[str]) -> list[str]:
    done = []
    try:
        entries = os.listdir(paths.containers)
    except FileNotFoundError:
        entries = []
    for cid in entries:
        d = paths.record(cid)
        if cid in live or os.path.exists(f"{d}/config.json"):
            continue
        # A record with no config: its creator died between mkdir and the first write.
        try:
            age = time.time() - os.stat(d).st_mtime
        except FileNotFoundError:
            continue
        rec = state.Record(paths, cid)
        if age > 5 and not rec.is_locked():
            state.rmtree(d)
            done.append(f"removed incomplete record {cid[:12]}")
    storage = f"{paths.storage}/containers"
    for cid in os.listdir(storage) if os.path.isdir(storage) else []:
        if cid not in live and not os.path.exists(paths.record(cid)) and \
                not os.path.exists(f"{storage}/{cid}/restart-record.json"):  # after a reboot: the boot hook's
            state.rmtree(f"{storage}/{cid}")
            done.append(f"removed storage of container {cid[:12]}")
    for name in os.listdir(paths.names) if os.path.isdir(paths.names) else []:
        try:
            owner = os.readlink(f"{paths.names}/{name}")
        except OSError:
            continue
        if not os.path.exists(paths.record(owner)):
            os.unlink(f"{paths.names}/{name}")
            done.append(f"released name {name}")
    return done
