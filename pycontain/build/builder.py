"""The builder: a parsed Dockerfile run step by step into layers of the image store.

Every step starts from the state the one before left: an image config (Env, Cmd, WorkingDir ...), the
stack of layer directories, and a cache key that names the whole chain of steps so far.

    RUN            a container through the same spec and executor as `pycontain run`, on the current
                   layers with a fresh overlay upperdir; that upperdir becomes the step's layer
    COPY, ADD      the current layers mounted as an overlay in the builder's own private mount namespace
                   (so no mount outlives a killed build), files copied into it (context.copy_into), the
                   upperdir becomes the layer
    WORKDIR        a layer only when the directory is missing (as BuildKit does)
    the rest       config only: a history entry marked empty_layer

Cache: a step's key is sha256(parent key, the instruction as expanded, the build args in effect for RUN,
the sources' checksum for COPY/ADD). images/cache/<key>.json records the step's result: its history
entry (with the time it was first made, so a rebuild gives the same image id) and its layer. A hit is
used only while its layer is still in the store; the store's garbage collector keeps the layers that
cache entries name, `builder prune` drops the entries and so frees them.

A build's working files live in storage/build/<id>/, flock'ed for the build's life: `pycontain gc`
removes the directories (and the cgroups of their RUN steps) of builds that were killed.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time

from pycontain import explain, faults, jsonfast
from pycontain.build import dockerfile as df
from pycontain.build import words
from pycontain.build.context import sha256
from pycontain.build.dockerfile import BuildError
from pycontain.errors import ImageNotFound, PycontainError, UsageError
from pycontain.state import Paths, atomic_write_json, rmtree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pycontain.build.context import Context
    from pycontain.images.store import Store

PREDEFINED_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                   "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
PLATFORM = {"TARGETPLATFORM": "linux/amd64", "TARGETOS": "linux", "TARGETARCH": "amd64", "TARGETVARIANT": "",
            "BUILDPLATFORM": "linux/amd64", "BUILDOS": "linux", "BUILDARCH": "amd64", "BUILDVARIANT": ""}
DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CONFIG_ONLY = {"ENV", "LABEL", "ARG", "CMD", "ENTRYPOINT", "EXPOSE", "VOLUME", "USER", "STOPSIGNAL", "HEALTHCHECK",
               "SHELL", "ONBUILD", "MAINTAINER"}
SUPPORTED = CONFIG_ONLY | {"RUN", "COPY", "ADD", "WORKDIR"}


class StepFailed(PycontainError):
    """A RUN whose command exited non-zero: the build's exit code is the command's."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


class Options:
    __slots__ = ("tags", "build_args", "target", "no_cache", "pull", "network", "labels", "quiet", "iidfile")

    def __init__(self, tags: list[Any] = (), build_args: dict[str, str] | None = None,  # type: ignore[assignment]
                 target: str | None = None, no_cache: bool = False, pull: str = "missing", network: str = "none",
                 labels: dict[str, str] | None = None, quiet: bool = False, iidfile: str | None = None) -> None:
        self.tags = list(tags)
        self.build_args = dict(build_args or {})
        self.target = target
        self.no_cache = no_cache
        self.pull = pull
        self.network = network
        self.labels = dict(labels or {})
        self.quiet = quiet
        self.iidfile = iidfile


class State:
    """Where a stage stands after a step: the image config so far, its layer dirs and its cache key."""

    def __init__(self, image: dict[str, Any], layers: list[str], key: str) -> None:
        self.image = jsonfast.loads(jsonfast.dumps(image))  # a private copy: steps change it in place
        self.image.setdefault("config", {})
        self.image.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        self.image.setdefault("history", [])
        self.image["rootfs"].setdefault("diff_ids", [])
        self.layers = list(layers)
        self.key = key
        self.args: dict[str, str | None] = {}  # the ARGs this stage declared, with their values
        self.cmd_set = False  # CMD given in this stage (ENTRYPOINT resets only an inherited one)

    @property
    def cfg(self) -> dict[str, Any]:
        return self.image["config"]  # type: ignore[no-any-return]

    def env(self) -> dict[str, str]:
        out = {}
        for item in self.cfg.get("Env") or ():
            k, _, v = item.partition("=")
            out[k] = v
        return out

    def expansion_env(self) -> dict[str, str]:
        """What $VAR means in an instruction: the ARGs, overridden by ENV (Docker's order)."""
        out = {k: v for k, v in self.args.items() if v is not None}
        out.update(self.env())
        return out

    def set_env(self, key: str, value: str) -> None:
        env = [e for e in self.cfg.get("Env") or () if e.partition("=")[0] != key]
        env.append(f"{key}={value}")
        self.cfg["Env"] = env


class Progress:
    """The step lines on stderr: `[2/6] RUN ...`, the step's output indented, timings and CACHED.
    Quiet (-q): nothing, but a failing step's output is kept to show with the error."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.kept: list[bytes] = []
        self.at_line_start = True

    def line(self, text: str) -> None:
        if not self.quiet:
            self._write(text.encode(errors="replace") + b"\n")

    def output(self, data: bytes) -> None:
        """A chunk of a RUN step's output, each line indented."""
        if self.quiet:
            self.kept.append(data)
            return
        out = bytearray()
        for piece in data.splitlines(keepends=True):
            if self.at_line_start:
                out += b"    "
            out += piece
            self.at_line_start = piece.endswith(b"\n")
        self._write(bytes(out))

    def end_output(self) -> None:
        if not self.at_line_start and not self.quiet:
            self._write(b"\n")
        self.at_line_start = True

    def _write(self, data: bytes) -> None:
        try:
            os.write(2, data)
        except OSError:
            pass


class _Sink:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def write(self, data: bytes) -> None:
        self.progress.output(data)


def cache_key(*parts: Any) -> str:
    return str(sha256(jsonfast.dumps(parts).encode()).hexdigest())


class Builder:
    def __init__(self, paths: Paths, opts: Options) -> None:
        from pycontain.images.store import Store

        self.paths = paths
        self.opts = opts
        self.store: Store = Store(paths)
        self.progress = Progress(opts.quiet)
        self.workdir = ""  # storage/build/<id>: created by build()
        self.empty = ""  # an empty directory: the lowerdir of a stage FROM scratch
        self.step_no = 0
        self.total = 0
        self.multi = False
        self.used_args: set[str] = set()
        self.meta: dict[str, str | None] = {}
        self.escape = "\\"
        self.ctx: Context | None = None
        self.stage_results: dict[int, State] = {}
        self.stages: list[df.Stage] = []
        self.step_seq = 0

    # ------------------------------------------------------------------ the whole build
    def build(self, ctx: Context) -> str:
        """Build the target stage of ctx's Dockerfile; returns the image id (tagged with every -t)."""
        self.ctx = ctx
        dfile = df.parse(ctx.dockerfile_text)
        self.escape = dfile.directives.get("escape", "\\")
        self.stages = dfile.stages
        for instr in dfile.meta_args:
            for key, raw in df.key_values(instr):
                value = self.opts.build_args.get(key)
                if value is None and raw is not None:
                    value = words.expand(raw, self._meta_env(), self.escape)
                self.meta[key] = value
        target = self._target_index()
        needed = self._needed(target)
        self.total = sum(1 + len(self.stages[i].instructions) for i in needed)
        self.multi = len(needed) > 1
        self.store.ensure()
        gc_fd = self.store.lock("gc", shared=True)
        try:
            for index in needed:
                self.stage_results[index] = self._stage(self.stages[index])
            state = self.stage_results[target]
            image_id = self._commit_image(state)
        finally:
            os.close(gc_fd)
        unused = set(self.opts.build_args) - self.used_args - set(PREDEFINED_ARGS)
        if unused and not self.opts.quiet:
            self.progress.line(f"warning: build arg(s) not consumed by any ARG: {', '.join(sorted(unused))}")
        return image_id

    def _meta_env(self) -> dict[str, str]:
        env = dict(PLATFORM)
        env.update({k: v for k, v in self.meta.items() if v is not None})
        return env

    def _target_index(self) -> int:
        if self.opts.target is None:
            return len(self.stages) - 1
        for stage in self.stages:
            if stage.name == self.opts.target.lower():
                return stage.index
        raise UsageError(f"target stage {self.opts.target!r} could not be found in the Dockerfile")

    def _stage_by_ref(self, ref: str, before: int) -> int | None:
        """A stage named (or numbered) `ref` among the stages before `before`, else None (an image)."""
        for stage in self.stages[:before]:
            if stage.name == ref.lower():
                return stage.index
        if ref.isdigit():
            if int(ref) < before:
                return int(ref)
            raise BuildError(f"stage {ref} is not a stage before this one")
        return None

    def _needed(self, target: int) -> list[int]:
        """The target and the stages it depends on (FROM stage, COPY --from=stage), in file order:
        the others are skipped, as BuildKit skips them."""
        needed = set()
        todo = [target]
        while todo:
            index = todo.pop()
            if index in needed:
                continue
            needed.add(index)
            stage = self.stages[index]
            base = words.expand(stage.base, self._meta_env(), self.escape, self.used_args)
            dep = self._stage_by_ref(base, index)
            if dep is not None:
                todo.append(dep)
            for instr in stage.instructions:
                for ref in instr.flags.get("from", ()) if instr.cmd in ("COPY", "ADD") else ():
                    dep = self._stage_by_ref(ref, index)
                    if dep is not None:
                        todo.append(dep)
        return sorted(needed)

    # ------------------------------------------------------------------ working directory, mount namespace
    def __enter__(self) -> Builder:
        self._begin()
        return self

    def __exit__(self, *exc: object) -> None:
        self._end()

    def _begin(self) -> None:
        """storage/build/<id> (flock'ed: `gc` leaves a live build's alone) and a private mount namespace
        for this process: the overlays COPY mounts vanish with it, whatever kills it."""
        from pycontain import syscalls

        base = f"{self.paths.storage}/build"
        os.makedirs(base, 0o700, exist_ok=True)
        self.workdir = f"{base}/{os.urandom(8).hex()}"
        os.mkdir(self.workdir, 0o700)
        self.lock_fd = os.open(f"{self.workdir}/lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        self.empty = f"{self.workdir}/empty"
        os.mkdir(self.empty, 0o755)
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount("none", "/", None, syscalls.MS_REC | syscalls.MS_SLAVE)
        explain.say("unshare(CLONE_NEWNS) + make / a slave: the build's overlay mounts are its own and vanish "
                    "with it")

    def _end(self) -> None:
        rmtree(self.workdir)
        os.close(self.lock_fd)

    def _step_dir(self) -> str:
        self.step_seq += 1
        d = f"{self.workdir}/s{self.step_seq}"
        for sub in ("upper", "work", "rootfs"):
            os.makedirs(f"{d}/{sub}", 0o755)
        return d

    # ------------------------------------------------------------------ stages
    def _label(self, stage: df.Stage) -> str:
        self.step_no += 1
        name = (stage.name or f"stage-{stage.index}") + " " if self.multi else ""
        return f"[{name}{self.step_no}/{self.total}]"

    def _stage(self, stage: df.Stage) -> State:
        base = words.expand(stage.base, self._meta_env(), self.escape, self.used_args)
        if stage.platform is not None:
            platform = words.expand(stage.platform, self._meta_env(), self.escape, self.used_args)
            if platform not in ("linux/amd64", "linux/x86_64", "amd64"):
                raise BuildError(f"Dockerfile:{stage.line}: FROM --platform={platform}: pycontain builds only for "
                                 "this host's platform, linux/amd64")
        label = self._label(stage)
        dep = self._stage_by_ref(base, stage.index)
        if dep is not None:
            state = self._copy_state(self.stage_results[dep])
            self.progress.line(f"{label} FROM {base} (stage {self.stages[dep].name or dep})")
        elif base == "scratch":
            state = State({"architecture": "amd64", "os": "linux"}, [], "scratch")
            self.progress.line(f"{label} FROM scratch")
        else:
            image = self._base_image(base)
            state = State(image.config, list(image.layers), image.id)
            self.progress.line(f"{label} FROM {image.ref or base}")
        if "PATH" not in state.env():  # BuildKit (and buildah) give a base without one the default PATH
            state.set_env("PATH", DEFAULT_PATH)
        state.args = {}
        state.cmd_set = False
        triggers = list(state.cfg.get("OnBuild") or ())
        state.cfg.pop("OnBuild", None)
        for text in triggers:
            trigger = df.parse(f"FROM scratch\n{text}\n", "ONBUILD trigger").stages[0].instructions[0]
            self.progress.line(f"    ONBUILD {text}")
            self._instruction(state, trigger, stage, label)
        for instr in stage.instructions:
            self._instruction(state, instr, stage, self._label(stage))
        return state

    def _copy_state(self, other: State) -> State:
        return State(other.image, other.layers, other.key)

    def _base_image(self, ref: str) -> Any:
        from pycontain import runtime

        try:
            return runtime.image_for(self.store, ref, self.opts.pull)
        except ImageNotFound as e:
            raise BuildError(f"FROM {ref}: {e}") from None

    # ------------------------------------------------------------------ instructions
    def _instruction(self, state: State, instr: df.Instruction, stage: df.Stage, label: str) -> None:
        cmd = instr.cmd
        if cmd not in SUPPORTED:
            raise BuildError(f"Dockerfile:{instr.line}: unknown instruction {cmd}")
        try:
            if cmd in CONFIG_ONLY:
                self._config_step(state, instr, label)
            elif cmd == "RUN":
                self._run(state, instr, label)
            elif cmd in ("COPY", "ADD"):
                self._copy(state, instr, stage, label)
            else:
                self._workdir(state, instr, label)
        except words.ExpansionError as e:
            raise BuildError(f"Dockerfile:{instr.line}: {e}") from None

    def _x(self, state: State, word: str) -> str:
        return words.expand(word, state.expansion_env(), self.escape, self.used_args)

    def _xs(self, state: State, text: str) -> list[str]:
        return words.split(text, state.expansion_env(), self.escape, self.used_args)

    def _args(self, state: State, instr: df.Instruction) -> list[str]:
        """The instruction's arguments, expanded word by word (the JSON form too, as Docker does)."""
        out = []
        for arg in instr.args:
            out.extend([self._x(state, arg)] if instr.json else self._xs(state, arg))
        return out

    def _config_step(self, state: State, instr: df.Instruction, label: str) -> None:
        cmd, cfg = instr.cmd, state.cfg
        shown = instr.original.strip()
        if cmd == "ARG":
            for key, raw in df.key_values(instr):
                self.used_args.add(key)
                if key in self.opts.build_args:
                    value: str | None = self.opts.build_args[key]
                elif raw is not None:
                    value = self._x(state, raw)
                elif key in self.meta:
                    value = self.meta[key]
                elif key in PLATFORM:
                    value = PLATFORM[key]
                else:
                    value = None
                state.args[key] = value
            # Its value reaches the keys of the steps that use it (RUN: all ARGs in scope; the rest: their
            # expanded words), so a changed --build-arg misses the cache from its first use, not here.
            state.key = cache_key(state.key, "ARG", sorted(state.args))
            self.progress.line(f"{label} {shown}")
            return
        detail: Any = None
        if cmd == "ENV":
            pairs = [(self._x(state, k), self._x(state, v or "")) for k, v in df.key_values(instr)]
            for key, value in pairs:
                state.set_env(key, value)
            detail = pairs
        elif cmd == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            for k, v in df.key_values(instr):
                labels[self._x(state, k)] = self._x(state, v or "")
            cfg["Labels"] = labels
            detail = labels
        elif cmd == "MAINTAINER":
            state.image["author"] = detail = " ".join(instr.args)
        elif cmd in ("CMD", "ENTRYPOINT"):
            argv = df.command_form(instr, list(cfg.get("Shell") or DEFAULT_SHELL))
            if cmd == "CMD":
                cfg["Cmd"] = argv
                state.cmd_set = True
            else:
                cfg["Entrypoint"] = argv
                if not state.cmd_set:
                    cfg["Cmd"] = None  # Docker: a new ENTRYPOINT drops the Cmd it inherited
            detail = argv
        elif cmd == "SHELL":
            if not instr.json or not instr.args:
                raise BuildError(f"Dockerfile:{instr.line}: SHELL requires the arguments in JSON form, e.g. "
                                 '["/bin/bash", "-c"]')
            cfg["Shell"] = detail = list(instr.args)
        elif cmd == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for word in self._args(state, instr):
                port, _, proto = word.partition("/")
                proto = (proto or "tcp").lower()
                lo, _, hi = port.partition("-")
                if not lo.isdigit() or (hi and not hi.isdigit()) or proto not in ("tcp", "udp", "sctp"):
                    raise BuildError(f"Dockerfile:{instr.line}: EXPOSE {word}: expected PORT[-PORT][/tcp|udp|sctp]")
                for p in range(int(lo), int(hi or lo) + 1):
                    ports[f"{p}/{proto}"] = {}
            cfg["ExposedPorts"] = detail = ports
        elif cmd == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            for path in self._args(state, instr):
                if not path:
                    raise BuildError(f"Dockerfile:{instr.line}: VOLUME specified can not be an empty string")
                vols[path] = {}
            cfg["Volumes"] = detail = vols
        elif cmd == "USER":
            args = self._args(state, instr)
            if len(args) != 1:
                raise BuildError(f"Dockerfile:{instr.line}: USER requires exactly one argument")
            cfg["User"] = detail = args[0]
        elif cmd == "STOPSIGNAL":
            args = self._args(state, instr)
            if len(args) != 1:
                raise BuildError(f"Dockerfile:{instr.line}: STOPSIGNAL requires exactly one argument")
            cfg["StopSignal"] = detail = args[0]
        elif cmd == "HEALTHCHECK":
            cfg["Healthcheck"] = detail = df.healthcheck(instr)
        elif cmd == "ONBUILD":
            text = instr.original.strip()[len("ONBUILD"):].strip()
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or ()), text]
            detail = text
        self._finish_step(state, label, shown, [cmd, detail])

    def _finish_step(self, state: State, label: str, shown: str, parts: list[Any]) -> None:
        """A config-only step: its key, and a history entry whose time comes from the cache when the same
        step was made before (so that an unchanged rebuild gives the same image id)."""
        key = cache_key(state.key, parts)
        hit = None if self.opts.no_cache else self._cached(key)
        created = hit["created"] if hit else _now()
        if not hit:
            self._remember(key, {"created": created})
        state.image["history"].append({"created": created, "created_by": shown, "empty_layer": True})
        state.key = key
        self.progress.line(f"{label} {shown}")

    # ------------------------------------------------------------------ the cache
    def _cache_path(self, key: str) -> str:
        return f"{self.store.root}/cache/{key}.json"

    def _cached(self, key: str) -> dict[str, Any] | None:
        try:
            with open(self._cache_path(key), "rb") as f:
                entry = jsonfast.loads(f.read())
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("created"), str):
            return None
        diff_id = entry.get("diff_id")
        if diff_id is not None and not (isinstance(diff_id, str) and self.store.has_layer(diff_id)):
            return None  # its layer was collected: make it again
        return entry

    def _remember(self, key: str, entry: dict[str, Any]) -> None:
        os.makedirs(f"{self.store.root}/cache", 0o700, exist_ok=True)
        atomic_write_json(self._cache_path(key), entry, durable=False)

    def _layer_step(self, state: State, label: str, shown: str, created_by: str, parts: list[Any],
                    make: Any, step_dir: Any = None) -> None:
        """A step that makes a layer: from the cache if the same step was made on the same chain before,
        else by make(step_dir) (which fills step_dir/upper)."""
        key = cache_key(state.key, parts)
        hit = None if self.opts.no_cache else self._cached(key)
        if hit is not None:
            self.progress.line(f"{label} {shown}  CACHED")
            diff_id, created = hit["diff_id"], hit["created"]
        else:
            self.progress.line(f"{label} {shown}")
            start = time.monotonic()
            step = (step_dir or self._step_dir)()
            try:
                make(step)
                faults.phase("build.layer")
                from pycontain.images import changes

                _, diff_id, _ = changes.layer_from_dir(self.store, f"{step}/upper", move=True)
            finally:
                rmtree(step)
            created = _now()
            self._remember(key, {"created": created, "diff_id": diff_id})
            self.progress.line(f"    done in {time.monotonic() - start:.2f} s")
        state.layers.append(f"{self.store.layers}/{diff_id[7:]}")
        state.image["rootfs"]["diff_ids"].append(diff_id)
        state.image["history"].append({"created": created, "created_by": created_by})
        state.key = key

    # ------------------------------------------------------------------ RUN
    def _run(self, state: State, instr: df.Instruction, label: str) -> None:
        for flag in instr.flags:
            if flag != "network":
                raise BuildError(f"Dockerfile:{instr.line}: RUN --{flag} is not supported by pycontain build")
        network = self.opts.network
        if "network" in instr.flags:
            network = {"default": self.opts.network}.get(instr.flags["network"][-1], instr.flags["network"][-1])
            if network not in ("none", "host", "bridge", self.opts.network):
                raise BuildError(f"Dockerfile:{instr.line}: RUN --network={network}: use default, none or host")
        shell = list(state.cfg.get("Shell") or DEFAULT_SHELL)
        argv = _run_argv(instr, shell)
        args = {k: v for k, v in state.args.items() if v is not None}
        env = dict(args)
        env.update(state.env())
        shown = instr.original.strip()
        created_by = "RUN " + (f"|{len(args)} " + " ".join(f"{k}={v}" for k, v in sorted(args.items())) + " "
                               if args else "") + " ".join(argv)
        parts = ["RUN", argv, sorted(args.items()), network]
        user = state.cfg.get("User") or ""
        workdir = state.cfg.get("WorkingDir") or "/"

        cid = os.urandom(32).hex()

        def make(step: str) -> None:
            self._run_container(state, step, cid, argv, [f"{k}={v}" for k, v in env.items()], user, workdir,
                                network, shown)

        self._layer_step(state, label, shown, created_by, parts, make, step_dir=lambda: self._container_dir(cid))

    def _container_dir(self, cid: str) -> str:
        """A RUN step's storage is a container's (storage/containers/<id>: the bridge network keeps its
        /etc files there) with no record; its id is in this build's `cids` first, so that `gc` leaves it
        alone while the build lives (builder.gc's live ids) and removes it, with its cgroup, after a kill."""
        with open(f"{self.workdir}/cids", "a") as f:
            f.write(cid + "\n")
        step = self.paths.storage_dir(cid)
        os.makedirs(f"{self.paths.storage}/containers", 0o700, exist_ok=True)
        os.mkdir(step, 0o700)
        for sub in ("upper", "work", "rootfs", "etc"):
            os.mkdir(f"{step}/{sub}", 0o755)
        return step

    def _run_container(self, state: State, step: str, cid: str, argv: list[str], env: list[str], user: str,
                       workdir: str, network_mode: str, shown: str) -> None:
        from pycontain import cgroups, namespaces, network, runtime, stdio
        from pycontain import oci as ocispec
        from pycontain.config import ContainerConfig, Limits, ResolvedConfig
        from pycontain.network import dns
        from pycontain.oci import executor

        hostname = cid[:12]
        cfg = ContainerConfig(image="", network=network_mode)
        res = ResolvedConfig(argv=tuple(argv), env=tuple(env), workdir=workdir, user=user, hostname=hostname)
        lowers = state.layers or [self.empty]
        cache = runtime.seccomp_cache(self.paths)
        net = None
        pipes = None
        plan = None
        cg = None
        child = None
        reaper = None
        try:
            net = network.prepare(self.paths, cid, f"build-{cid[:12]}", hostname, cfg)
            etc_files = dns.write_files(f"{step}/etc", hostname)
            etc_files.update((net or {}).get("etc_files", {}))
            spec = ocispec.container_spec(cid, cfg, res, Limits(), step, lowers, etc_files, seccomp_cache=cache)
            plan = executor.plan(spec, step, cid, seccomp_cache=cache)
            pipes = stdio.Pipes(keep_stdin_open=False)
            proc = plan.process
            assert proc is not None
            proc.stdio = pipes.child
            cg = executor.make_cgroup(plan)
            child = executor.spawn(plan)
            pid = child.pid
            reaper = runtime.Reaper(pid)
            pipes.close_child_ends()
            if net:
                network.attach(self.paths, net, pid)
            child.go()
            child.wait_exec()
            sink = _Sink(self.progress)
            pipes.relay(pid, None, sink, sink)
            self.progress.end_output()
            code = namespaces.exit_code(reaper.wait())
        except BaseException:
            self.progress.end_output()
            raise
        finally:
            if reaper is not None:
                reaper.kill_and_reap()  # nothing, once it was waited for
            if child is not None:
                child.close()
            if pipes is not None:
                pipes.close()
            if cg is not None:
                cg.remove()
            elif plan is None:
                cgroups.for_container(cid).remove()
            if plan is not None:
                plan.close()
            if net:
                network.detach(self.paths, net, cid)
                network.release(self.paths, net, cid)
        if code != 0:
            if self.progress.quiet:
                sys.stderr.buffer.write(b"".join(self.progress.kept))
                sys.stderr.flush()
            raise StepFailed(f"the step `{shown}` failed: its command exited with code {code}", code)
        self.progress.kept.clear()
        _drop_mountpoints(f"{step}/upper", [m["destination"] for m in spec["mounts"]] + [workdir], lowers)

    # ------------------------------------------------------------------ COPY, ADD
    def _copy(self, state: State, instr: df.Instruction, stage: df.Stage, label: str) -> None:
        from pycontain.build import context as cx

        cmd = instr.cmd
        allowed = {"COPY": {"from", "chown", "chmod", "link", "exclude"},
                   "ADD": {"chown", "chmod", "link", "checksum", "exclude"}}[cmd]
        for flag in instr.flags:
            if flag not in allowed:
                raise BuildError(f"Dockerfile:{instr.line}: {cmd} --{flag} is not supported by pycontain build")
        flags = {k: self._x(state, v[-1]) for k, v in instr.flags.items()}
        excludes = [self._x(state, v) for v in instr.flags.get("exclude", ())]
        chmod = cx.parse_chmod(flags["chmod"]) if "chmod" in flags else None
        if instr.heredocs:
            args = [self._x(state, a) for a in instr.args]
        else:
            args = self._args(state, instr)
        if len(args) < 2:
            raise BuildError(f"Dockerfile:{instr.line}: {cmd} requires at least two arguments: SOURCE... DEST")
        srcs, dest = args[:-1], args[-1]
        workdir = state.cfg.get("WorkingDir") or "/"
        shown = instr.original.strip()
        tmp_roots: list[str] = []
        mounted: list[str] = []
        fetched: list[Any] = []
        try:
            # Where the sources come from: the context, another stage or image, URLs, heredocs.
            if instr.heredocs:
                d = f"{self.workdir}/heredoc{self.step_seq}-{instr.line}"
                os.makedirs(d, 0o755)
                tmp_roots.append(d)
                names = {h.name for h in instr.heredocs}
                for h in instr.heredocs:
                    content = self._x(state, h.content) if h.expand else h.content
                    with open(f"{d}/{h.name}", "w") as f:
                        f.write(content)
                    os.chmod(f"{d}/{h.name}", 0o644)
                srcs = [s.removeprefix("<<").removeprefix("-").strip("\"'") for s in srcs]
                if not all(s in names for s in srcs):
                    raise BuildError(f"Dockerfile:{instr.line}: {cmd}: mixing heredocs and files is not supported")
                source: Any = cx.RootSource(d)
            elif "from" in flags:
                ref = flags["from"]
                dep = self._stage_by_ref(ref, stage.index)
                if dep is not None:
                    layers = self.stage_results[dep].layers
                else:
                    image = self._base_image(ref)
                    layers = list(image.layers)
                view = self._mount_view(layers)
                mounted.append(view)
                source = cx.RootSource(view)
            elif cmd == "ADD" and any(_is_url(s) for s in srcs):
                if not all(_is_url(s) for s in srcs):
                    raise BuildError(f"Dockerfile:{instr.line}: ADD: mixing URLs and local files is not supported")
                d = f"{self.workdir}/url{self.step_seq}-{instr.line}"
                os.makedirs(d, 0o755)
                tmp_roots.append(d)
                fetched = []
                for url in srcs:
                    path = cx.fetch_url(url, d)
                    if "checksum" in flags:
                        _check_digest(path, flags["checksum"], url)
                    fetched.append(cx.url_source(path, url))
                source = cx.RootSource(d)
            else:
                assert self.ctx is not None
                source = self.ctx
            sources = fetched if cmd == "ADD" and any(_is_url(s) for s in args[:-1]) else source.sources(srcs)
            chown_spec = flags.get("chown")
            checksum = source.checksum(sources, excludes=excludes)
            parts = [cmd, args, flags.get("from"), chown_spec, chmod, checksum, excludes,
                     cmd == "ADD" and "from" not in flags]
            ids: list[tuple[int, int] | None] = [None]

            def make(step: str) -> None:
                root = self._mount_step(step, state.layers)
                try:
                    chown = cx.resolve_owner(root, chown_spec) if chown_spec else None
                    ids[0] = chown
                    cx.copy_into(root, sources, dest, workdir, chown=chown, chmod=chmod,
                                 unpack_archives=cmd == "ADD" and not instr.heredocs and "from" not in flags
                                 and not any(_is_url(s) for s in args[:-1]), excludes=excludes)
                finally:
                    self._umount(f"{step}/rootfs")

            created_by = f"{cmd} " + " ".join(f"--{k}={v}" for k, v in sorted(flags.items())
                                               if k in ("from", "chown", "chmod")) + (" " if flags else "") + \
                " ".join(args)
            self._layer_step(state, label, shown, created_by.replace("  ", " "), parts, make)
        finally:
            for view in mounted:
                self._umount(view)
                rmtree(os.path.dirname(view))
            for d in tmp_roots:
                rmtree(d)

    # ------------------------------------------------------------------ WORKDIR
    def _workdir(self, state: State, instr: df.Instruction, label: str) -> None:
        args = self._args(state, instr)
        if len(args) != 1:
            raise BuildError(f"Dockerfile:{instr.line}: WORKDIR requires exactly one argument")
        path = os.path.normpath(os.path.join(state.cfg.get("WorkingDir") or "/", args[0]))
        path = "/" + path.lstrip("/")
        state.cfg["WorkingDir"] = path
        shown = instr.original.strip()
        if path == "/" or _exists_in_layers(state.layers, path):
            self._finish_step(state, label, shown, ["WORKDIR", path])
            return

        def make(step: str) -> None:
            from pycontain import mounts

            root = self._mount_step(step, state.layers)
            try:
                root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    os.close(mounts.open_in_root(root_fd, path, "dir"))
                finally:
                    os.close(root_fd)
            finally:
                self._umount(f"{step}/rootfs")

        self._layer_step(state, label, shown, f"WORKDIR {path}", ["WORKDIR", path], make)

    # ------------------------------------------------------------------ overlays in our mount namespace
    def _mount_step(self, step: str, layers: list[str]) -> str:
        from pycontain import oci as ocispec
        from pycontain import syscalls

        root = f"{step}/rootfs"
        syscalls.mount("overlay", root, "overlay", 0,
                       ocispec.overlay_options(layers or [self.empty], f"{step}/upper", f"{step}/work"))
        return root

    def _mount_view(self, layers: list[str]) -> str:
        """A read-only view of some layers (COPY --from): an overlay with no upperdir."""
        from pycontain import syscalls

        self.step_seq += 1
        d = f"{self.workdir}/v{self.step_seq}"
        os.makedirs(f"{d}/root", 0o755)
        lower = ":".join(reversed([self.empty, *layers]))
        syscalls.mount("overlay", f"{d}/root", "overlay", syscalls.MS_RDONLY, f"lowerdir={lower}")
        return f"{d}/root"

    def _umount(self, path: str) -> None:
        from pycontain import syscalls

        try:
            syscalls.umount2(path, syscalls.MNT_DETACH)
        except OSError:
            pass

    # ------------------------------------------------------------------ the image
    def _commit_image(self, state: State) -> str:
        from pycontain import jsonfast

        image = state.image
        if self.opts.labels:
            image["config"]["Labels"] = {**(image["config"].get("Labels") or {}), **self.opts.labels}
        history = image["history"]
        if history:
            image["created"] = history[-1]["created"]
        image["architecture"], image["os"] = "amd64", "linux"
        for key in ("container", "container_config", "docker_version", "parent", "id"):
            image.pop(key, None)
        image_id = self.store.put_blob(jsonfast.dumps(image).encode())
        self.store.write_meta(image_id)
        from pycontain.images import reference

        if self.opts.tags:
            self.store.retag({str(reference.parse(t) if isinstance(t, str) else t): image_id
                              for t in self.opts.tags})
        return image_id


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() % 1 * 1e9):09d}Z"


def _is_url(src: str) -> bool:
    return src.startswith(("http://", "https://"))


def _check_digest(path: str, want: str, url: str) -> None:
    algo, _, hexd = want.partition(":")
    if algo != "sha256" or len(hexd) != 64:
        raise BuildError(f"ADD --checksum={want}: expected sha256:<64 hex digits>")
    h = sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if h.hexdigest() != hexd:
        raise BuildError(f"ADD {url}: checksum mismatch: got sha256:{h.hexdigest()}, expected {want}")


def _run_argv(instr: df.Instruction, shell: list[str]) -> list[str]:
    """RUN's command (dockerfile.command_form); a heredoc that is the whole command and starts with #!
    runs under the interpreter it names, as BuildKit runs it (BuildKit writes a file; `-c` needs none)."""
    doc = df.single_heredoc(instr) if instr.heredocs and not instr.json else None
    if doc is not None and doc.content.startswith("#!"):
        interp = doc.content.splitlines()[0][2:].split()
        if interp:
            return [*interp, "-c", doc.content]  # sh, bash, python ... all take -c (perl's -e would not)
    return df.command_form(instr, shell)


def _exists_in_layers(layers: list[str], path: str) -> bool:
    """Whether `path` is in the stack of layer dirs (topmost wins; a 0:0 char device is a whiteout).
    Links on the way are not followed: a false "missing" only makes a layer that mkdir finds done."""
    import stat

    rel = path.strip("/")
    for layer in reversed(layers):
        try:
            st = os.lstat(f"{layer}/{rel}")
        except OSError:
            continue
        return not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0)
    return False


def _drop_mountpoints(upper: str, targets: list[str], lowers: list[str]) -> None:
    """The executor creates what a mount needs to land on (/etc/hosts, /proc ...) when the image lacks
    it; those empty placeholders are not the RUN's doing and stay out of its layer."""
    import stat

    for target in sorted(set(targets), key=len, reverse=True):
        rel = target.strip("/")
        if not rel or _exists_in_layers(lowers, target):
            continue
        while rel:
            path = f"{upper}/{rel}"
            try:
                st = os.lstat(path)
            except OSError:
                break
            if stat.S_ISREG(st.st_mode) and st.st_size == 0:
                os.unlink(path)
            elif stat.S_ISDIR(st.st_mode) and not os.listdir(path):
                os.rmdir(path)
            else:
                break
            rel = os.path.dirname(rel)
            if _exists_in_layers(lowers, "/" + rel):
                break


def prune(paths: Paths, all_entries: bool) -> list[str]:
    """`builder prune`: drop the cache entries no image uses (-a: all of them), then collect the layers
    only they kept. Returns what was removed."""
    from pycontain.images.store import Store

    store = Store(paths)
    cache = f"{store.root}/cache"
    try:
        entries = os.listdir(cache)
    except FileNotFoundError:
        return []
    used: set[str] = set()
    if not all_entries:
        for image_id in store.image_ids():
            try:
                used.update(store.config(image_id).get("rootfs", {}).get("diff_ids") or ())
            except PycontainError:
                continue
    removed = []
    gc_fd = store.lock("gc")
    try:
        for name in entries:
            path = f"{cache}/{name}"
            try:
                with open(path, "rb") as f:
                    entry = jsonfast.loads(f.read())
            except (OSError, ValueError):
                entry = {}
            diff_id = entry.get("diff_id") if isinstance(entry, dict) else None
            if all_entries or (diff_id is not None and diff_id not in used) or not isinstance(entry, dict):
                os.unlink(path)
                removed.append(diff_id)
            elif diff_id is None and not all_entries:
                continue
    finally:
        os.close(gc_fd)
    lines = store.collect_garbage(paths)
    count = sum(1 for d in removed if d)
    return [f"removed {len(removed)} build cache entr{'y' if len(removed) == 1 else 'ies'} "
            f"({count} with a layer)", *lines]
