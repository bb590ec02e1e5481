"""The pytest plugin (entry point pytest11 `pycontain`): containers in tests without glue.

    def test_web(pycontain):
        r = pycontain.run("busybox", ["echo", "hi"], memory="64m")
        assert r.exit_code == 0 and r.stdout == "hi\\n"
        with pycontain.container("busybox", ["sleep", "60"], env={"A": "1"}) as c:
            assert c.exec(["sh", "-c", "echo $A"]).stdout == "1\\n"

Fixture `pycontain` (per test; the state root under pytest's tmp dir is one per pytest run):
run(image, cmd, **flags) -> Result, container(image, cmd=None, **flags) (a context manager yielding a
running Container), image(tarball_or_ref), network(name=None), volume(name=None), cli(*args). Keyword
flags map onto `pycontain run` options: memory="64m" -> --memory 64m, pids_limit=10 -> --pids-limit 10,
rm=True -> --rm, env={"A": "1"} -> -e A=1, publish=["8080:80"] -> -p 8080:80 (lists repeat the option).
Everything a test made (containers, networks, volumes) is removed when it ends, pass or fail.

Options: --pycontain-leakcheck fails a test that leaves mounts, links, cgroups, nft rules or processes
behind (pycontain.leakcheck); --pycontain-netns runs every command of the fixture in a network namespace
of the run's own (its bridges and nft rules never touch the host's network); --pycontain-bin PATH.
Markers: pycontain_root, pycontain_requires(*features) skip with a reason; pycontain_testdata(path, what)
fails with one line when test data is missing.

This module is imported by every pytest run in an environment where pycontain is installed: it imports
nothing beyond what pytest itself has loaded, and does nothing for tests that use none of it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias

import pytest

# A command that has not finished in this long is stuck (a hang guard, not a timing assertion).
COMMAND_TIMEOUT = 60.0
SETTLE_TIMEOUT = 20.0
ARGS: TypeAlias = str | os.PathLike[str]


class Result(NamedTuple):
    """What a command in a container (run, exec) did."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class CommandFailed(AssertionError):
    """A pycontain command the fixture needed failed (an AssertionError, so pytest shows it as a failure)."""


def describe(res: subprocess.CompletedProcess[str]) -> str:
    args = res.args if isinstance(res.args, list) else [res.args]
    return (f"`{' '.join(map(str, args))}` exited {res.returncode}\n"
            f"--- stdout\n{res.stdout}--- stderr\n{res.stderr}")


def default_binary() -> list[str]:
    import shutil

    found = shutil.which("pycontain")
    return [found] if found else [sys.executable, "-m", "pycontain"]


# ---------------------------------------------------------------- the command line, for one state root

class Command:
    """`pycontain --root ROOT ...`, optionally inside a network namespace. Calls return
    subprocess.CompletedProcess (text); ok() insists on exit 0. The project's own tests use it too."""

    def __init__(self, root: Path, binary: Sequence[str] | str | None = None, netns: str | None = None) -> None:
        self.root = Path(root)
        if binary is None:
            binary = default_binary()
        self.binary = [binary] if isinstance(binary, str) else list(binary)
        self.netns = netns
        self.popens: list[subprocess.Popen[str]] = []

    def argv(self, *args: ARGS) -> list[str]:
        argv = [*self.binary, "--root", str(self.root), *map(str, args)]
        if self.netns is not None:
            return ["nsenter", f"--net={self.netns}", "--", *argv]
        return argv

    def __call__(self, *args: ARGS, input: str | None = None,
                 timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        if input is None:
            return subprocess.run(self.argv(*args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=timeout)
        return subprocess.run(self.argv(*args), input=input, capture_output=True, text=True, timeout=timeout)

    def ok(self, *args: ARGS, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run and insist on exit 0; the failure says everything needed to see why."""
        res = self(*args, **kw)
        if res.returncode != 0:
            raise CommandFailed(describe(res))
        return res

    def popen(self, *args: ARGS, **kw: Any) -> subprocess.Popen[str]:
        """Start pycontain in the background; remove_all() kills it if it still runs."""
        p: subprocess.Popen[str] = subprocess.Popen(
            self.argv(*args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, **kw)
        self.popens.append(p)
        return p

    def inspect(self, ref: str) -> dict[str, Any]:
        import json

        res = self.ok("inspect", ref)
        data = json.loads(res.stdout)
        if not (isinstance(data, list) and len(data) == 1):
            raise CommandFailed(f"inspect {ref}: expected one object, got {res.stdout!r}")
        return dict(data[0])

    def status(self, ref: str) -> str:
        return str(self.inspect(ref)["State"]["Status"])

    def wait_until_running(self, ref: str) -> dict[str, Any]:
        """Poll inspect until the container runs (a hang guard: nothing asserts how long it took)."""
        import json

        deadline = time.monotonic() + SETTLE_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            last = self("inspect", ref)
            if last.returncode == 0:
                info = json.loads(last.stdout)[0]
                if info["State"]["Status"] == "running":
                    return dict(info)
            time.sleep(0.05)
        raise AssertionError(f"container {ref} never reached running; last inspect: "
                             + (describe(last) if last else "none"))

    def wait_for_log(self, ref: str, text: str) -> str:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        out = ""
        while time.monotonic() < deadline:
            out = self.ok("logs", ref).stdout
            if text in out:
                return out
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never appeared in the logs of {ref}; logs so far: {out!r}")

    def stop_popens(self) -> None:
        for p in self.popens:
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=COMMAND_TIMEOUT)
        self.popens.clear()

    def remove_all(self) -> None:
        """Kill whatever was started with popen() and remove every container in the root. No `gc`: it
        looks at host-wide objects, so only the tests that need it call it."""
        self.stop_popens()
        ids = self("ps", "-a", "-q").stdout.split()
        if ids:
            self("rm", "-f", *ids)


# ---------------------------------------------------------------- flags

# pycontain's default network (and its Docker name): made on first use, kept for the run like images.
DEFAULT_NETWORKS = {"pycontain", "bridge"}
# Options whose dict form joins key and value with ":" rather than "=".
COLON_PAIRS = {"add_host"}


def flag_args(flags: Mapping[str, Any]) -> list[str]:
    """Keyword arguments -> pycontain options: memory="64m" -> --memory 64m; rm=True -> --rm; False or
    None -> nothing; a list repeats the option; a dict gives K=V (add_host: K:V) each."""
    out: list[str] = []
    for key, value in flags.items():
        option = ("-" if len(key) == 1 else "--") + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            out.append(option)
        elif isinstance(value, Mapping):
            sep = ":" if key in COLON_PAIRS else "="
            for k, v in value.items():
                out += [option, f"{k}{sep}{v}"]
        elif isinstance(value, list | tuple | set | frozenset):
            for v in value:
                out += [option, str(v)]
        else:
            out += [option, str(value)]
    return out


def command_args(cmd: str | Sequence[ARGS] | None) -> list[str]:
    """A container command: a list as it is, a string split as a shell would split words (no shell runs:
    use ["sh", "-c", "..."] for pipes)."""
    if cmd is None:
        return []
    if isinstance(cmd, str):
        return shlex.split(cmd)
    return [str(c) for c in cmd]


def _result(res: subprocess.CompletedProcess[str]) -> Result:
    return Result(res.returncode, res.stdout, res.stderr)


# ---------------------------------------------------------------- the session and the per-test object

class Session:
    """One state root (and optionally one network namespace) for the whole pytest run."""

    def __init__(self, root: Path, binary: Sequence[str] | str | None = None, private_netns: bool = False) -> None:
        self.holder: subprocess.Popen[bytes] | None = None
        netns = self._new_netns() if private_netns else None
        self.cli = Command(root, binary, netns)
        self.images: dict[str, str] = {}  # source (tarball path or ref) -> name in this root
        self.counter = 0

    @property
    def root(self) -> Path:
        return self.cli.root

    @property
    def netns(self) -> str | None:
        return self.cli.netns

    def _new_netns(self) -> str:
        # A process of ours that holds the namespace: it goes (and with it every bridge and rule made in
        # there) when the run ends, however it ends.
        self.holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "infinity"], stdin=subprocess.DEVNULL)
        host = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + SETTLE_TIMEOUT
        # Until unshare has made the namespace and exec'd sleep, /proc/PID/ns/net is still the host's.
        while os.readlink(f"/proc/{self.holder.pid}/ns/net") == host:
            if self.holder.poll() is not None or time.monotonic() > deadline:
                raise pytest.UsageError("--pycontain-netns: `unshare --net` did not make a network namespace")
            time.sleep(0.005)
        path = f"/proc/{self.holder.pid}/ns/net"
        subprocess.run(["nsenter", f"--net={path}", "--", "ip", "link", "set", "lo", "up"], check=True,
                       timeout=COMMAND_TIMEOUT)
        return path

    def unique(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{os.getpid()}-{self.counter}"

    def listing(self) -> tuple[set[str], set[str], set[str]]:
        """Container ids, network names and volume names in the root now (read from its layout: no
        command runs, so tests that make nothing pay nothing). Lock and index files are not objects."""
        def dirs(path: Path, marker: str | None = None) -> set[str]:
            try:
                entries = os.scandir(path)
            except FileNotFoundError:
                return set()
            with entries:
                return {e.name for e in entries if e.is_dir() and not e.name.startswith(".")
                        and (marker is None or os.path.exists(os.path.join(e.path, marker)))}

        return (dirs(self.root / "run" / "containers"), dirs(self.root / "run" / "networks", "network.json"),
                dirs(self.root / "storage" / "volumes"))

    def close(self) -> list[str]:
        problems = []
        try:
            ids = self.cli("ps", "-a", "-q").stdout.split()
            if ids:
                res = self.cli("rm", "-f", *ids)
                if res.returncode != 0:
                    problems.append(describe(res))
            if os.path.isdir(self.root / "run" / "networks"):
                self.cli("network", "prune", "-f")
        finally:
            if self.holder is not None:
                self.holder.kill()
                self.holder.wait(timeout=COMMAND_TIMEOUT)
        return problems


class Container:
    """A running container made by PycontainFixture.container()."""

    def __init__(self, owner: PycontainFixture, cid: str, name: str) -> None:
        self.owner = owner
        self.id = cid
        self.name = name

    def __repr__(self) -> str:
        return f"<Container {self.name} {self.id[:12]}>"

    def inspect(self) -> dict[str, Any]:
        return self.owner.cli.inspect(self.id)

    @property
    def status(self) -> str:
        return str(self.inspect()["State"]["Status"])

    @property
    def ip(self) -> str:
        """Its IPv4 address on its (first) network; "" with --network none or host."""
        settings = self.inspect().get("NetworkSettings") or {}
        address = settings.get("IPAddress") or ""
        if not address:
            for net in (settings.get("Networks") or {}).values():
                if net.get("IPAddress"):
                    return str(net["IPAddress"])
        return str(address)

    def port(self, container_port: int | str, protocol: str = "tcp") -> int:
        """The host port published for a container port (-p / publish=)."""
        want = f"{container_port}/{protocol}"
        lines = self.owner.cli.ok("port", self.id).stdout.splitlines()
        for text in lines:
            spec, _, host = text.partition(" -> ")
            if spec.strip() == want:
                return int(host.rsplit(":", 1)[1])
        raise CommandFailed(f"{self.name} publishes no {want}: `pycontain port` says {lines}")

    def exec(self, cmd: str | Sequence[ARGS], *, input: str | None = None, timeout: float = COMMAND_TIMEOUT,
             **flags: Any) -> Result:
        interactive = ["-i"] if input is not None else []
        return _result(self.owner.cli("exec", *interactive, *flag_args(flags), self.id, *command_args(cmd),
                                      input=input, timeout=timeout))

    def logs(self, stderr: bool = False) -> str:
        """What it wrote to stdout so far (stderr=True: to stderr)."""
        res = self.owner.cli.ok("logs", self.id)
        return res.stderr if stderr else res.stdout

    def stop(self, timeout: int | None = None) -> None:
        self.owner.cli.ok("stop", *(["-t", str(timeout)] if timeout is not None else []), self.id)

    def wait(self) -> int:
        """Wait until it exits; its exit code."""
        return int(self.owner.cli.ok("wait", self.id).stdout.split()[0])

    def remove(self) -> None:
        self.owner.cli("rm", "-f", self.id)


class PycontainFixture:
    """The `pycontain` fixture: containers, images and networks for one test, in the run's state root."""

    def __init__(self, session: Session, test_name: str) -> None:
        self.session = session
        # Any other pycontain command, in the run's root: pycontain.cli.ok("images") and so on.
        self.cli: Command = session.cli
        self.test_name = "".join(c if c.isalnum() or c in "_.-" else "-" for c in test_name)[:40].strip("-.")
        self.before = session.listing()
        self.made_networks: list[str] = []
        self.made_volumes: list[str] = []

    @property
    def root(self) -> Path:
        return self.session.root

    @property
    def netns(self) -> str | None:
        """The network namespace every command runs in (--pycontain-netns), else None (the host's)."""
        return self.session.netns

    # -- images

    def image(self, source: ARGS, name: str | None = None) -> str:
        """Make an image available in the run's root and return its name: a .tar/.tar.gz/.tgz file is
        imported (a root filesystem, named `name` or after the file) or loaded (a docker-archive, with its
        own tags); anything else is a reference, taken from the default store when it is there (`pycontain
        save | load`, so nothing is downloaded twice) or else pulled. Images stay for the rest of the run
        (they are files in the run's root, not host objects)."""
        key = f"{os.fspath(source)}\0{name or ''}"
        if key in self.session.images:
            return self.session.images[key]
        path = Path(os.fspath(source))
        if path.suffix in (".tar", ".gz", ".tgz") or path.is_file():
            if not path.is_file():
                raise CommandFailed(f"image tarball {path} does not exist")
            result = self._from_tarball(path, name)
        else:
            result = self._from_ref(str(source), name)
        self.session.images[key] = result
        self.session.images[f"{result}\0"] = result
        return result

    def _from_tarball(self, path: Path, name: str | None) -> str:
        if _is_docker_archive(path):
            out = self.cli.ok("load", "-i", path).stdout
            loaded = [line.split(":", 1)[1].strip() for line in out.splitlines()
                      if line.startswith("Loaded image")]
            if not loaded:
                raise CommandFailed(f"`pycontain load -i {path}` loaded no tagged image: {out!r}")
            if name:
                self.cli.ok("tag", loaded[0], name)
                return name
            return loaded[0]
        if name is None:
            name = path.name
            for suffix in (".tar.gz", ".tgz", ".tar"):
                name = name.removesuffix(suffix)
            name = "".join(c if c.isalnum() or c in "._-" else "-" for c in name.lower()).strip("._-") or "image"
        self.cli.ok("import", path, name)
        return name

    def _from_ref(self, ref: str, name: str | None) -> str:
        if self.cli("image", "inspect", ref).returncode != 0:
            if not self._copy_from_default_store(ref):
                self.cli.ok("pull", ref, timeout=COMMAND_TIMEOUT * 5)
        if name and name != ref:
            self.cli.ok("tag", ref, name)
            return name
        return ref

    def _copy_from_default_store(self, ref: str) -> bool:
        binary = self.cli.binary
        probe = subprocess.run([*binary, "image", "inspect", ref], stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=COMMAND_TIMEOUT)
        if probe.returncode != 0:
            return False
        save = subprocess.Popen([*binary, "save", ref], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        load = subprocess.run(self.cli.argv("load", "-q"), stdin=save.stdout, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT * 5)
        assert save.stdout is not None and save.stderr is not None
        save.stdout.close()
        save_err = save.stderr.read().decode(errors="replace")
        save.stderr.close()
        if save.wait(timeout=COMMAND_TIMEOUT) != 0 or load.returncode != 0:
            raise CommandFailed(f"copying {ref} from the default store failed: {save_err}{load.stderr}")
        return True

    def _ensure_image(self, image: str) -> None:
        # The first use of a name in this run: a name only the default store has (the built-in busybox)
        # is copied in; anything else is left to `run`, which pulls per PYCONTAIN_PULL as Docker does.
        key = f"{image}\0"
        if key in self.session.images:
            return
        if self.cli("image", "inspect", image).returncode != 0:
            self._copy_from_default_store(image)
        self.session.images[key] = image

    # -- containers

    def run(self, image: str, cmd: str | Sequence[ARGS] | None = None, *, input: str | None = None,
            timeout: float = COMMAND_TIMEOUT, **flags: Any) -> Result:
        """`pycontain run --rm [flags] image cmd` to the end; its exit code and output. rm=False keeps
        the container (removed when the test ends). pycontain's own errors are results too (125)."""
        self._ensure_image(image)
        flags.setdefault("rm", True)
        if input is not None:
            flags.setdefault("interactive", True)
        return _result(self.cli("run", *flag_args(flags), image, *command_args(cmd), input=input, timeout=timeout))

    @contextmanager
    def container(self, image: str, cmd: str | Sequence[ARGS] | None = None, **flags: Any) -> Iterator[Container]:
        """A container running in the background (`run -d`) for the with-block; removed after it."""
        self._ensure_image(image)
        name = str(flags.pop("name", None) or self.session.unique(f"pytest-{self.test_name or 'test'}"))
        flags.pop("detach", None)
        res = self.cli("run", "-d", "--name", name, *flag_args(flags), image, *command_args(cmd))
        if res.returncode != 0:
            self.cli("rm", "-f", name)  # a container created but not started
            raise CommandFailed(describe(res))
        c = Container(self, res.stdout.strip().splitlines()[-1], name)
        try:
            yield c
        finally:
            c.remove()

    def network(self, name: str | None = None, **flags: Any) -> str:
        """A user network (`network create`), removed when the test ends; its name. Its bridge lives in
        the host's network namespace unless the run uses --pycontain-netns."""
        name = name or self.session.unique("pytest-net")
        self.cli.ok("network", "create", *flag_args(flags), name)
        self.made_networks.append(name)
        return name

    def volume(self, name: str | None = None) -> str:
        """A named volume, removed when the test ends; its name."""
        name = name or self.session.unique("pytest-vol")
        self.cli.ok("volume", "create", name)
        self.made_volumes.append(name)
        return name

    def cleanup(self) -> list[str]:
        """Remove what the test made: containers (killing them), then networks, then volumes. What could
        not be removed, as lines for the failure."""
        problems: list[str] = []
        self.cli.stop_popens()
        containers, networks, volumes = self.session.listing()
        old_containers, old_networks, old_volumes = self.before
        new = sorted(containers - old_containers)
        if new:
            res = self.cli("rm", "-f", "-v", *new)
            if res.returncode != 0:
                problems.append(describe(res))
        # The default network ("pycontain", made on first use) belongs to the run's root, like its images.
        made = [n for n in self.made_networks if n in networks]
        nets = made + sorted(networks - old_networks - set(made) - DEFAULT_NETWORKS)
        if nets:
            res = self.cli("network", "rm", *nets)
            if res.returncode != 0:
                problems.append(describe(res))
        vols = sorted(set(self.made_volumes) | (volumes - old_volumes))
        if vols:
            res = self.cli("volume", "rm", "-f", *vols)
            if res.returncode != 0:
                problems.append(describe(res))
        return problems


def _is_docker_archive(path: Path) -> bool:
    """A docker-archive / OCI layout tar has manifest.json or index.json at its top."""
    import tarfile

    try:
        with tarfile.open(path) as tar:
            for member in tar:
                if member.name.lstrip("./") in ("manifest.json", "index.json", "oci-layout"):
                    return True
    except (tarfile.TarError, OSError):
        return False
    return False


# ---------------------------------------------------------------- host facts for the markers

def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _has_overlay() -> bool:
    if "\toverlay\n" in _read("/proc/filesystems"):
        return True
    release = os.uname().release
    return any(Path(f"/lib/modules/{release}/kernel/fs/overlayfs").glob("overlay.ko*"))


def _has_userns() -> bool:
    return os.path.exists("/proc/self/ns/user") and _read("/proc/sys/user/max_user_namespaces").strip() not in ("", "0")


def _which(name: str) -> Callable[[], bool]:
    def check() -> bool:
        import shutil

        return shutil.which(name) is not None

    return check


# feature -> (check, what the skip says is missing)
FEATURES: dict[str, tuple[Callable[[], bool], str]] = {
    "root": (lambda: os.geteuid() == 0, "root (pycontain makes namespaces, mounts and cgroups)"),
    "userns": (_has_userns, "user namespaces (/proc/sys/user/max_user_namespaces is 0 or missing)"),
    "overlay": (_has_overlay, "overlayfs (not in /proc/filesystems, no overlay module)"),
    "cgroup2": (lambda: os.path.exists("/sys/fs/cgroup/cgroup.controllers"),
                "a cgroup v2 (unified) hierarchy at /sys/fs/cgroup"),
    "cgroup": (lambda: os.path.isdir("/sys/fs/cgroup") and bool(os.listdir("/sys/fs/cgroup")),
               "cgroups mounted at /sys/fs/cgroup"),
    "seccomp": (lambda: "Seccomp:" in _read("/proc/self/status"), "seccomp (no Seccomp: in /proc/self/status)"),
    "netns": (lambda: os.path.exists("/proc/self/ns/net"), "network namespaces"),
    "nft": (_which("nft"), "the nft command (nftables)"),
    "unshare": (_which("unshare"), "util-linux unshare/nsenter"),
}
_feature_cache: dict[str, bool] = {}


def missing_feature(names: Sequence[str]) -> str | None:
    """The first of the named host features this machine lacks, as a skip reason; None if all are there."""
    for name in names:
        if name not in FEATURES:
            raise ValueError(f"pycontain_requires: unknown feature {name!r} (known: {', '.join(FEATURES)})")
        if name not in _feature_cache:
            _feature_cache[name] = FEATURES[name][0]()
        if not _feature_cache[name]:
            return f"needs {FEATURES[name][1]}"
    return None


def require_testdata(path: ARGS, what: str | None = None) -> Path:
    """Fail the test with one line when test data that is kept outside the repository is missing."""
    p = Path(os.fspath(path))
    if not p.exists():
        pytest.fail(f"missing test data: {what + ' ' if what else ''}expected at {p}", pytrace=False)
    return p


# ---------------------------------------------------------------- hooks

SESSION_KEY = pytest.StashKey[Session]()

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pycontain", "pycontain containers in tests")
    group.addoption("--pycontain-leakcheck", action="store_true", default=None,
                    help="fail a test that leaves mounts, links, cgroups, nft rules or processes behind")
    group.addoption("--pycontain-netns", action="store_true", default=None,
                    help="run the pycontain fixture's commands in a network namespace of this run's own")
    group.addoption("--pycontain-bin", metavar="PATH", default=None,
                    help="the pycontain command (default: pycontain on PATH, else python -m pycontain)")
    parser.addini("pycontain_leakcheck", "as --pycontain-leakcheck", type="bool", default=False)
    parser.addini("pycontain_netns", "as --pycontain-netns", type="bool", default=False)


def _setting(config: pytest.Config, name: str) -> bool:
    value = config.getoption(f"--pycontain-{name}")
    return bool(config.getini(f"pycontain_{name}") if value is None else value)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pycontain_root: skip unless the test runs as root")
    config.addinivalue_line("markers", "pycontain_requires(*features): skip unless the host has these features ("
                            + ", ".join(FEATURES) + ")")
    config.addinivalue_line("markers", "pycontain_testdata(path, what=None): fail in one line when PATH is missing")
    if _setting(config, "leakcheck"):
        config.pluginmanager.register(LeakCheck(), "pycontain-leakcheck")


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Markers only: a test without any of them costs three dictionary lookups.
    if item.get_closest_marker("pycontain_root") is not None and os.geteuid() != 0:
        _skip("needs root (pycontain makes namespaces, mounts and cgroups)")
    wanted = [str(a) for m in item.iter_markers("pycontain_requires") for a in m.args]
    if wanted:
        try:
            reason = missing_feature(wanted)
        except ValueError as e:
            pytest.fail(str(e), pytrace=False)
        if reason:
            _skip(reason)
    for m in item.iter_markers("pycontain_testdata"):
        require_testdata(m.args[0], m.args[1] if len(m.args) > 1 else m.kwargs.get("what"))


def _skip(reason: str) -> None:
    # Reported at the test's own line, as pytest's skipif marker does (not at this file's).
    raise pytest.skip.Exception(reason, _use_item_location=True)


@pytest.fixture(scope="session")
def pycontain_session(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """The run's state root (under pytest's basetemp) and, with --pycontain-netns, its network namespace."""
    if os.geteuid() != 0:
        _skip("the pycontain fixture needs root (pycontain makes namespaces, mounts and cgroups)")
    config = request.config
    binary = config.getoption("--pycontain-bin")
    session = Session(tmp_path_factory.mktemp("pycontain") / "root", shlex.split(binary) if binary else None,
                      private_netns=_setting(config, "netns"))
    config.stash[SESSION_KEY] = session
    yield session
    del config.stash[SESSION_KEY]
    problems = session.close()
    if problems:
        raise CommandFailed("removing the run's containers failed:\n" + "\n".join(problems))


@pytest.fixture
def pycontain(pycontain_session: Session, request: pytest.FixtureRequest) -> Iterator[PycontainFixture]:
    """Containers for this test: run(), container(), image(), network(), volume(), cli; all removed after it."""
    fixture = PycontainFixture(pycontain_session, request.node.name)
    yield fixture
    problems = fixture.cleanup()
    if problems:
        raise CommandFailed("the test's pycontain objects could not all be removed:\n" + "\n".join(problems))


class LeakCheck:
    """--pycontain-leakcheck: a snapshot before each test (once every fixture of a wider scope exists) and
    a diff after it (once the test's own fixtures, the pycontain fixture's cleanup among them, are done).

    The run's default bridge and its chains belong to the run's state root, like its images: a link that
    is a bridge of a network still in that root, and nft/iptables lines that name no container, are not a
    test's leak while such a network exists (they go when the run ends)."""

    @pytest.fixture(autouse=True)
    def _pycontain_leakcheck(self, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                             ) -> Iterator[None]:
        from pycontain import leakcheck

        netns = self._netns(request)
        before = leakcheck.take(netns)
        yield
        base = tmp_path_factory.getbasetemp()
        found = leakcheck.new_since(before, netns=netns)
        if found:
            # Other pytest runs keep their roots in the same layout; a namespaced process that nothing
            # places is another tool's (the fixture's containers are placed by their overlays).
            judge = leakcheck.Attribution([base], record_globs=(f"{base.parent}/pytest-*/*/*/run/containers/{{cid}}",),
                                          unplaced_containers=False)
            found = leakcheck.settled(self._without_network_infrastructure(request, found), judge)
        if found:
            pytest.fail("left behind (--pycontain-leakcheck):\n"
                        + "\n".join(leakcheck.line(kind, obj) for kind, obj in found), pytrace=False)

    @staticmethod
    def _netns(request: pytest.FixtureRequest) -> str | None:
        session = _existing_session(request)
        return session.netns if session else None

    @staticmethod
    def _without_network_infrastructure(request: pytest.FixtureRequest,
                                        found: list[tuple[str, str]]) -> list[tuple[str, str]]:
        import json
        import re

        session = _existing_session(request)
        if session is None:
            return found
        bridges = set()
        for f in (session.root / "run" / "networks").glob("*/network.json"):
            try:
                bridges.add(str(json.loads(f.read_text())["bridge"]))
            except (OSError, ValueError, KeyError):
                continue
        if not bridges:
            return found
        container_id = re.compile(r"[0-9a-f]{64}")
        return [(kind, obj) for kind, obj in found
                if not (kind == "link" and obj in bridges)
                and not (kind in ("nft", "iptables") and not container_id.search(obj))]


def _existing_session(request: pytest.FixtureRequest) -> Session | None:
    """The run's Session if some test already made it (never makes one)."""
    return request.config.stash.get(SESSION_KEY, None)
