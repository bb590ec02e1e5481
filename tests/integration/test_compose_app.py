"""Issue 14's acceptance: the five-service application of tests/compose_app under `pycontain compose`.

One stack for the whole module (building and starting it is most of the time): the tests below run in
file order against it, from `compose config` and `up` to `down -v`, which must leave nothing behind.

    web      :18090 -> 80 on front-tier and back-tier; answers by asking `backend` by name
    backend  back-tier only (an internal network), a health check (web depends on it with service_healthy)
    worker   deploy.replicas: 2 on back-tier, appends to the named volume `data`
    init     one-shot (service_completed_successfully), writes a marker into `data`
    results  front-tier only, serves what the workers wrote

Everything runs inside a network namespace of the module's own (the "host" of the bridges, veths, nft
rules and the published port), with its own --root. PYCONTAIN_NETWORK=none is lifted as in the other
network tests; PYCONTAIN_DNS_UPSTREAM=none keeps the embedded resolver from forwarding anything.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import leaks as leaks_module
import support
from netns_support import NetNs, NetPycontain, http_get, leakcheck_wrapper, network_leftovers
from support import ALPINE_TARBALL, SETTLE_TIMEOUT, describe, wait_for

pytestmark = pytest.mark.integration

APP = Path(__file__).resolve().parents[1] / "compose_app"
COMPOSE_FILE = APP / "compose.yaml"
PROJECT = "composeapp"
SERVICES = ("backend", "init", "results", "web", "worker")
LONG_RUNNING = ("backend", "results", "web", "worker")
NETWORKS = {"front-tier": f"{PROJECT}_front-tier", "back-tier": f"{PROJECT}_back-tier"}
VOLUME = f"{PROJECT}_data"
PROJECT_LABEL = f"label=com.docker.compose.project={PROJECT}"
IPV4 = re.compile(r"\b(\d{1,3}(?:\.\d{1,3}){3})\b")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class App:
    """The module's stack: pycontain in the module's namespace, and `compose -f tests/compose_app/...`."""

    def __init__(self, pc: NetPycontain, ns: NetNs) -> None:
        self.pc = pc
        self.ns = ns
        self.down = False

    def compose(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.pc("compose", "-f", str(COMPOSE_FILE), *args, **kw)

    def compose_ok(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        res = self.compose(*args, **kw)
        assert res.returncode == 0, describe(res)
        return res

    def containers(self) -> dict[str, dict[str, Any]]:
        """name -> inspect of every container of the project (running or not), found by its label."""
        ids = self.pc.ok("ps", "-a", "-q", "--no-trunc", "--filter", PROJECT_LABEL).stdout.split()
        if not ids:
            return {}
        infos = json.loads(self.pc.ok("inspect", *ids).stdout)
        return {info["Name"].lstrip("/"): info for info in infos}

    def of_service(self, service: str) -> dict[str, dict[str, Any]]:
        return {name: info for name, info in self.containers().items()
                if info["Config"]["Labels"].get("com.docker.compose.service") == service}

    def teardown_by_hand(self) -> None:
        """After a failed test: `down -v`, and whatever that leaves (or if it hangs) removed with the plain
        commands, so one failure does not leave a running stack behind."""
        try:
            self.compose("down", "-v", "-t", "1")
        except subprocess.TimeoutExpired:
            pass
        self.pc.remove_all()
        self.pc("network", "rm", *NETWORKS.values())
        self.pc("volume", "rm", VOLUME)

    def address(self, name: str, network: str) -> str:
        info = self.pc.inspect(name)
        return str(info["NetworkSettings"]["Networks"][NETWORKS[network]]["IPAddress"])


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The module's namespace and root with alpine imported; afterwards `down -v` (if the tests did not get
    that far) and the leak checks: no veth, nft rule, lease, port, process or mount remains."""
    tmp = tmp_path_factory.mktemp("composeapp")
    ns = NetNs()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("PYCONTAIN_NETWORK", raising=False)
        mp.setenv("PYCONTAIN_DNS_UPSTREAM", "none")
        mp.setattr(leaks_module, "LEAKCHECK", leakcheck_wrapper(tmp, ns))  # leaks.py runs it in the netns
        snapshot = support.leakcheck_snapshot(tmp / "leakcheck-before.json")
        pc = NetPycontain(tmp / "root", ns)
        stack = App(pc, ns)
        try:
            pc.ok("import", ALPINE_TARBALL, "alpine")
            yield stack
        finally:
            try:
                if not stack.down:
                    stack.teardown_by_hand()
                pc.remove_all()
                assert network_leftovers(pc) == []
                # What may remain is a network the stack did not make (the default bridge a build's RUN
                # steps use): never the project's.
                kept = {json.loads(f.read_text())["bridge"]: json.loads(f.read_text()).get("name", "")
                        for f in (pc.root / "run" / "networks").glob("*/network.json")}
                assert not [n for n in kept.values() if n.startswith(PROJECT)], kept
                found = [line for line in support.leaks_since(snapshot, tmp_path_factory.getbasetemp())
                         if not (line.startswith("leaked link: ") and line.split(": ", 1)[1] in kept)
                         and not (line.startswith("leaked nft: ") and not re.search(r"[0-9a-f]{64}", line))]
                assert not found, "left behind:\n" + "\n".join(found)
            finally:
                ns.close()


@pytest.fixture(scope="module")
def app(host: App) -> App:
    """The stack built (`compose build`) and started (`compose up -d`), once for the module."""
    host.compose_ok("build", timeout=support.COMMAND_TIMEOUT * 2)
    host.compose_ok("up", "-d", timeout=support.COMMAND_TIMEOUT * 2)
    return host


# ---------------------------------------------------------------- the model

def test_config_is_stable_and_complete(host: App) -> None:
    """`compose config` twice gives the same text: every service, network and volume, in long forms."""
    import yaml

    app = host
    first = app.compose_ok("config").stdout
    assert app.compose_ok("config").stdout == first
    model = yaml.safe_load(first)
    assert model["name"] == PROJECT
    assert sorted(model["services"]) == sorted(SERVICES)
    assert {key: body["name"] for key, body in model["networks"].items()} == NETWORKS
    assert {key: body["name"] for key, body in model["volumes"].items()} == {"data": VOLUME}
    assert model["networks"]["back-tier"].get("internal") is True
    assert not model["networks"]["front-tier"].get("internal")
    web, worker = model["services"]["web"], model["services"]["worker"]
    # Ports, depends_on and volumes come out in their long forms whichever way the file wrote them.
    assert [{k: str(v) for k, v in p.items() if k in ("target", "published", "protocol")}
            for p in web["ports"]] == [{"target": "80", "published": "18090", "protocol": "tcp"}]
    assert web["depends_on"]["backend"]["condition"] == "service_healthy"
    assert web["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert model["services"]["results"]["depends_on"]["worker"]["condition"] == "service_started"
    assert sorted(web["networks"]) == ["back-tier", "front-tier"]
    assert worker["deploy"]["replicas"] == 2
    assert [(v["type"], v["source"], v["target"]) for v in worker["volumes"]] == [("volume", "data", "/data")]
    results_volume = model["services"]["results"]["volumes"][0]
    assert (results_volume["type"], results_volume["source"], results_volume.get("read_only")) == \
        ("volume", "data", True)
    assert model["services"]["backend"]["healthcheck"]["test"][0] == "CMD-SHELL"
    assert all(Path(s["build"]["context"]).is_absolute() for s in model["services"].values())


# ---------------------------------------------------------------- up

def test_up_starts_every_service_backend_healthy_init_done(app: App) -> None:
    containers = app.containers()
    expected = {f"{PROJECT}-{s}-1" for s in SERVICES} | {f"{PROJECT}-worker-2"}
    assert set(containers) == expected, sorted(containers)
    for name, info in containers.items():
        labels = info["Config"]["Labels"]
        service, number = name[len(PROJECT) + 1:].rsplit("-", 1)
        assert (labels.get("com.docker.compose.project"), labels.get("com.docker.compose.service"),
                labels.get("com.docker.compose.container-number")) == (PROJECT, service, number), labels
        if service == "init":
            assert (info["State"]["Status"], info["State"]["ExitCode"]) == ("exited", 0), info["State"]
        else:
            assert info["State"]["Status"] == "running", (name, info["State"])
    assert containers[f"{PROJECT}-backend-1"]["State"]["Health"]["Status"] == "healthy"
    listing = app.compose_ok("ps").stdout
    for name in expected - {f"{PROJECT}-init-1"}:
        line = next((ln for ln in listing.splitlines() if name in ln), "")
        assert re.search(r"\bUp\b|\brunning\b", line), listing
    backend_line = next(ln for ln in listing.splitlines() if f"{PROJECT}-backend-1" in ln)
    assert "healthy" in backend_line and "unhealthy" not in backend_line, listing
    everything = app.compose_ok("ps", "-a").stdout
    init_line = next((ln for ln in everything.splitlines() if f"{PROJECT}-init-1" in ln), "")
    assert re.search(r"Exited \(0\)|exited", init_line), everything


def test_up_made_the_projects_networks_and_volume(app: App) -> None:
    networks = app.pc.ok("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert set(NETWORKS.values()) <= set(networks), networks
    volumes = app.pc.ok("volume", "ls", "-q").stdout.split()
    assert VOLUME in volumes, volumes
    [back_tier] = json.loads(app.pc.ok("network", "inspect", NETWORKS["back-tier"]).stdout)
    assert back_tier["Internal"] is True
    web = app.pc.inspect(f"{PROJECT}-web-1")
    assert set(web["NetworkSettings"]["Networks"]) == set(NETWORKS.values())
    backend = app.pc.inspect(f"{PROJECT}-backend-1")
    assert set(backend["NetworkSettings"]["Networks"]) == {NETWORKS["back-tier"]}


def test_http_on_the_published_port_goes_through_web_to_backend(app: App) -> None:
    reply = http_get(app.ns, "127.0.0.1", 18090)
    assert reply.startswith("HTTP/1.0 200"), reply
    body = reply.split("\n\n", 1)[1]  # (the reply comes back as text: its CRLFs are newlines)
    assert re.fullmatch(r"web \S+ -> backend \S+ answers GET /\n", body), body


def test_results_serves_what_init_and_the_workers_wrote_to_the_volume(app: App) -> None:
    workers = {info["Config"]["Hostname"] for info in app.of_service("worker").values()}
    assert len(workers) == 2

    def page() -> str | None:
        res = app.compose("exec", "-T", "web", "wget", "-q", "-T", "3", "-O", "-", "http://results:8081/")
        return res.stdout if res.returncode == 0 and all(h in res.stdout for h in workers) else None

    text = wait_for("both workers' lines on the results page", page)
    assert re.match(r"init \d+\n", text), text


def test_front_tier_cannot_reach_a_back_tier_only_address(app: App) -> None:
    backend = app.address(f"{PROJECT}-backend-1", "back-tier")
    url = f"http://{backend}:8080/probe"
    # The control: web is on back-tier and gets an answer from the very same address.
    assert "answers GET /probe" in app.compose_ok("exec", "-T", "web", "wget", "-q", "-T", "2", "-O", "-",
                                                  url).stdout
    res = app.compose("exec", "-T", "results", "wget", "-q", "-T", "2", "-O", "-", url)
    assert res.returncode != 0 and "answers" not in res.stdout, describe(res)
    # Nor does its resolver give it the name: backend shares no network with it.
    res = app.compose("exec", "-T", "results", "nslookup", "-type=a", "backend")
    assert backend not in res.stdout and res.returncode != 0, describe(res)


# ---------------------------------------------------------------- up again, scale

def test_a_second_up_with_no_change_recreates_nothing(app: App) -> None:
    before = {name: info["Id"] for name, info in app.containers().items()}
    app.compose_ok("up", "-d", timeout=support.COMMAND_TIMEOUT * 2)
    after = {name: info["Id"] for name, info in app.containers().items()}
    assert after == before
    running = {name for name, info in app.containers().items() if info["State"]["Status"] == "running"}
    assert running == set(before) - {f"{PROJECT}-init-1"}


def test_scale_worker_to_3_adds_exactly_one(app: App) -> None:
    before = {name: info["Id"] for name, info in app.containers().items()}
    app.compose_ok("up", "-d", "--scale", "worker=3", timeout=support.COMMAND_TIMEOUT * 2)
    after = {name: info["Id"] for name, info in app.containers().items()}
    assert set(after) - set(before) == {f"{PROJECT}-worker-3"}
    assert {name: after[name] for name in before} == before  # nobody else was touched
    assert app.pc.status(f"{PROJECT}-worker-3") == "running"


def test_dns_answers_worker_with_every_replicas_address(app: App) -> None:
    expected = {app.address(name, "back-tier") for name in app.of_service("worker")}
    assert len(expected) == 3

    def lookup() -> set[str] | None:
        res = app.compose("exec", "-T", "web", "nslookup", "-type=a", "worker")
        found = {m for line in res.stdout.splitlines() if line.startswith("Address")
                 for m in IPV4.findall(line) if f"{m}:" not in line}  # not the server's "ADDR:53" line
        return found if res.returncode == 0 and found == expected else None

    # Answers follow a scale-up within a second; the poll is only a hang guard.
    assert wait_for(f"nslookup worker to answer {sorted(expected)}", lookup) == expected
    # A container name resolves to that container's address, on a network both share.
    res = app.compose_ok("exec", "-T", "web", "nslookup", "-type=a", f"{PROJECT}-backend-1")
    assert app.address(f"{PROJECT}-backend-1", "back-tier") in res.stdout, res.stdout


def prefixed(text: str) -> dict[str, list[str]]:
    """`compose logs` output as prefix -> its lines; every line must carry a `NAME  | ` prefix."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = re.match(r"^(\S+)\s+\| (.*)$", ANSI.sub("", line))
        assert m, f"a line without its container's prefix: {line!r}"
        out.setdefault(m.group(1), []).append(m.group(2))
    return out


def last_tick(lines: list[str]) -> int:
    for text in lines:
        assert re.fullmatch(r"\S+ \d+ tick \d+", text), text
    return max(int(text.rsplit(" ", 1)[1]) for text in lines)


def test_logs_prefix_every_line_and_follow_new_ones(app: App) -> None:
    replicas = {"worker-1", "worker-2", "worker-3"}
    history = prefixed(app.compose_ok("logs", "worker").stdout)
    assert set(history) == replicas, sorted(history)
    before = {prefix: last_tick(lines) for prefix, lines in history.items()}
    proc = app.pc.popen("compose", "-f", str(COMPOSE_FILE), "logs", "-f", "worker")
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    text = ""
    deadline = time.monotonic() + SETTLE_TIMEOUT

    def followed() -> bool:
        seen = prefixed(text[:text.rfind("\n") + 1])
        return set(seen) == replicas and all(last_tick(seen[p]) > before[p] for p in replicas)

    # Read for a moment, until every replica has printed a tick newer than the history (half a second apart).
    while not followed() and time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.5)[0]:
            continue
        chunk = os.read(fd, 65536).decode(errors="replace")
        if not chunk:
            break
        text += chunk
    still_following = proc.poll() is None
    proc.kill()
    _, err = proc.communicate(timeout=support.COMMAND_TIMEOUT)
    assert followed(), f"logs -f never showed new lines of every replica (before: {before}):\n{text}{err}"
    assert still_following, f"logs -f returned instead of following: {err}"


# ---------------------------------------------------------------- down

def test_down_v_removes_containers_networks_volume_and_resolver(app: App) -> None:
    root = str(app.pc.root)
    app.compose_ok("down", "-v")
    app.down = True
    assert app.pc.ok("ps", "-a", "-q", "--filter", PROJECT_LABEL).stdout == ""
    assert app.pc.ok("ps", "-a", "-q").stdout == ""
    networks = app.pc.ok("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert not set(NETWORKS.values()) & set(networks), networks
    assert VOLUME not in app.pc.ok("volume", "ls", "-q").stdout.split()

    def processes_of_the_root() -> list[str]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if root in cmdline and "leakcheck" not in cmdline:
                found.append(f"{pid} {cmdline.strip()}")
        return found

    # No monitor, no embedded DNS resolver: nothing started for this root still runs (leakcheck, in the
    # fixture's teardown, then covers every process, mount, link and rule).
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while processes_of_the_root() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_of_the_root() == []
    assert network_leftovers(app.pc) == []
