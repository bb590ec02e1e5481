"""`pycontain compose`: the commands, on real containers, networks and volumes in the test's own network
namespace (the acceptance application is test_compose_app.py). Every test ends with `compose down -v`
(or checks what is left after it) and a leak check: no container, bridge, rule, resolver or volume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from images_support import LocalRegistry
from netns_support import NetNs, NetPycontain, leak_checked
from support import SETTLE_TIMEOUT, Pycontain, assert_pycontain_error

pytest_plugins = ("images_support",)  # the registry fixtures

LOOP = "trap 'exit 0' TERM; while true; do sleep 0.2; done"


@pytest.fixture
def cpc(tmp_path: Path, ns: NetNs, busybox_tarball: Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetPycontain]:
    """pycontain in the test's namespace with busybox imported; afterwards nothing may be left at all
    (compose down removes the networks too, so unlike the network tests no bridge is excused)."""
    monkeypatch.delenv("PYCONTAIN_NETWORK", raising=False)
    monkeypatch.setenv("PYCONTAIN_DNS_UPSTREAM", "none")  # nothing is forwarded off this machine
    with leak_checked(tmp_path, ns, busybox_tarball, monkeypatch, tmp_path_factory.getbasetemp()) as p:
        yield p


def project(tmp_path: Path, text: str, name: str = "compose.yaml", **files: str) -> Path:
    d = tmp_path / "proj"
    d.mkdir(exist_ok=True)
    (d / name).write_text(text)
    for fname, body in files.items():
        (d / fname.replace("__", ".")).write_text(body)
    return d / name


def compose(pc: NetPycontain, f: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return pc("compose", "-f", f, *args, **kw)  # type: ignore[arg-type]


def ok(pc: NetPycontain, f: Path, *args: str) -> subprocess.CompletedProcess[str]:
    res = compose(pc, f, *args)
    assert res.returncode == 0, f"compose {' '.join(args)}: {res.stderr}"
    return res


def ids(pc: NetPycontain, f: Path) -> dict[str, str]:
    """container name -> id of the project's containers (stopped ones too)."""
    out = ok(pc, f, "ps", "-a", "--format", "{{.Name}} {{.ID}}").stdout.split("\n")
    return dict(line.split() for line in out if line.strip())  # type: ignore[misc]


def inspect(pc: NetPycontain, ref: str) -> dict[str, object]:
    return json.loads(pc.ok("inspect", ref).stdout)[0]  # type: ignore[no-any-return]


BASIC = f"""
name: t
services:
  db:
    image: busybox
    command: ["sh", "-c", "{LOOP}"]
    environment:
      ROLE: db
  worker:
    image: busybox
    command: ["sh", "-c", "{LOOP}"]
    deploy:
      replicas: 2
    depends_on: [db]
"""


def test_up_names_labels_idempotent_scale_down(cpc: NetPycontain, tmp_path: Path) -> None:
    f = project(tmp_path, BASIC)
    ok(cpc, f, "up", "-d")
    first = ids(cpc, f)
    assert sorted(first) == ["t-db-1", "t-worker-1", "t-worker-2"]
    labels = inspect(cpc, "t-worker-2")["Config"]["Labels"]  # type: ignore[index]
    assert labels["com.docker.compose.project"] == "t"
    assert labels["com.docker.compose.service"] == "worker"
    assert labels["com.docker.compose.container-number"] == "2"
    listed = cpc.ok("ps", "-q", "--filter", "label=com.docker.compose.service=worker").stdout.split()
    assert len(listed) == 2
    # Nothing changed: nothing is recreated.
    again = ok(cpc, f, "up", "-d")
    assert ids(cpc, f) == first, again.stderr
    # --scale adds exactly one, then takes the highest numbers away.
    ok(cpc, f, "up", "-d", "--scale", "worker=3")
    third = ids(cpc, f)
    assert sorted(third) == ["t-db-1", "t-worker-1", "t-worker-2", "t-worker-3"]
    assert {k: third[k] for k in first} == first
    ok(cpc, f, "up", "-d", "--scale", "worker=1")
    assert sorted(ids(cpc, f)) == ["t-db-1", "t-worker-1"]
    # A changed service is recreated; the others are left running.
    f.write_text(BASIC.replace("ROLE: db", "ROLE: database"))
    before = ids(cpc, f)
    out = ok(cpc, f, "up", "-d", "--scale", "worker=1")
    after = ids(cpc, f)
    assert after["t-db-1"] != before["t-db-1"], out.stderr
    assert after["t-worker-1"] == before["t-worker-1"]
    assert "ROLE=database" in cpc.ok("exec", "t-db-1", "env").stdout
    # --force-recreate recreates even an unchanged one.
    ok(cpc, f, "up", "-d", "--force-recreate", "--scale", "worker=1")
    assert ids(cpc, f)["t-worker-1"] != after["t-worker-1"]
    # down by the project's name alone (no file at hand): the containers and the project's network go.
    (tmp_path / "elsewhere").mkdir()
    res = cpc("compose", "--project-directory", tmp_path / "elsewhere", "-p", "t", "down")
    assert res.returncode == 0, res.stderr
    assert ids(cpc, f) == {}
    assert "t_default" not in cpc.ok("network", "ls").stdout


def test_depends_on_conditions(cpc: NetPycontain, tmp_path: Path) -> None:
    f = project(tmp_path, f"""
name: t
services:
  init:
    image: busybox
    command: ["sh", "-c", "sleep 0.3; echo ready > /shared/marker"]
    volumes: ["shared:/shared"]
  check:
    image: busybox
    command: ["sh", "-c", "{LOOP}"]
    healthcheck:
      test: ["CMD", "test", "-f", "/shared/marker"]
      interval: 100ms
      retries: 50
    volumes: ["shared:/shared"]
    depends_on:
      init: {{condition: service_completed_successfully}}
  app:
    image: busybox
    command: ["sh", "-c", "cat /shared/marker > /shared/seen; {LOOP}"]
    volumes: ["shared:/shared"]
    depends_on:
      check: {{condition: service_healthy}}
volumes:
  shared: {{}}
""")
    res = ok(cpc, f, "up", "-d")
    # app started only once init had finished and check was healthy: it saw the marker.
    assert cpc.ok("exec", "t-app-1", "cat", "/shared/seen").stdout == "ready\n", res.stderr
    assert "t-check-1  Healthy" in res.stderr and "t-init-1  Exited" in res.stderr
    status = {line.split()[0]: line for line in ok(cpc, f, "ps", "-a").stdout.splitlines()[1:]}
    assert "Exited (0)" in status["t-init-1"] and "healthy" in status["t-check-1"]
    ok(cpc, f, "down", "-v")
    assert "t_shared" not in cpc.ok("volume", "ls").stdout


def test_failed_dependency_is_one_error(cpc: NetPycontain, tmp_path: Path) -> None:
    f = project(tmp_path, f"""
name: t
services:
  init:
    image: busybox
    command: ["sh", "-c", "exit 3"]
  app:
    image: busybox
    command: ["sh", "-c", "{LOOP}"]
    depends_on:
      init: {{condition: service_completed_successfully}}
  sick:
    image: busybox
    command: ["sh", "-c", "{LOOP}"]
    healthcheck: {{test: ["CMD", "false"], interval: 50ms, retries: 1}}
  needs_sick:
    image: busybox
    command: ["sh", "-c", "{LOOP}"]
    depends_on:
      sick: {{condition: service_healthy}}
""")
    res = compose(cpc, f, "up", "-d", "app")
    assert res.returncode == 125
    assert "service init didn't complete successfully: exit 3" in res.stderr
    assert "Traceback" not in res.stderr
    assert "t-app-1" not in ids(cpc, f)
    res = compose(cpc, f, "up", "-d", "needs_sick")
    assert res.returncode == 125 and "t-sick-1 is unhealthy" in res.stderr, res.stderr
    ok(cpc, f, "down")


def test_logs_exec_run_and_lifecycle(cpc: NetPycontain, tmp_path: Path) -> None:
    f = project(tmp_path, """
name: t
services:
  talker:
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; echo hello from $$HOSTNAME; while true; do sleep 0.2; done"]
    hostname: talker
    ports: ["127.0.0.1::80"]
""")
    ok(cpc, f, "up", "-d")
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while "hello" not in (out := ok(cpc, f, "logs").stdout) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert out == "talker-1  | hello from talker\n"
    assert ok(cpc, f, "logs", "--no-log-prefix").stdout == "hello from talker\n"
    assert ok(cpc, f, "exec", "-T", "talker", "hostname").stdout == "talker\n"
    assert compose(cpc, f, "exec", "-T", "talker", "sh", "-c", "exit 7").returncode == 7
    # run: a one-off container of the service, its exit code, gone with --rm.
    res = compose(cpc, f, "run", "--rm", "-T", "-e", "X=1", "talker", "sh", "-c", "echo $X; exit 4")
    assert (res.returncode, res.stdout) == (4, "1\n"), res.stderr
    assert sorted(ids(cpc, f)) == ["t-talker-1"]
    port = ok(cpc, f, "port", "talker", "80").stdout.strip()
    assert port.startswith("127.0.0.1:") and int(port.rsplit(":", 1)[1]) > 0
    assert "sh -c" in ok(cpc, f, "top").stdout
    assert "busybox" in ok(cpc, f, "images").stdout
    assert ok(cpc, f, "ls", "-q").stdout == "t\n"
    ok(cpc, f, "stop", "-t", "5")
    assert ok(cpc, f, "ps", "-q").stdout == ""
    assert "Exited (0)" in ok(cpc, f, "ps", "-a").stdout
    ok(cpc, f, "start")
    assert len(ok(cpc, f, "ps", "-q").stdout.split()) == 1
    ok(cpc, f, "kill", "-s", "KILL")
    assert ok(cpc, f, "ps", "-q").stdout == ""
    ok(cpc, f, "rm", "-f")
    assert ids(cpc, f) == {}
    ok(cpc, f, "down")


def test_env_files_interpolation_profiles(cpc: NetPycontain, tmp_path: Path) -> None:
    f = project(tmp_path, f"""
name: t
services:
  app:
    image: busybox
    command: ["sh", "-c", "{LOOP}"]
    env_file: [app.env]
    environment:
      FROM_DOTENV: ${{GREETING:-unset}}
      OVERRIDDEN: by-environment
  debug:
    image: busybox
    command: ["sh", "-c", "{LOOP}"]
    profiles: [debug]
""", app__env="FROM_FILE=file-value\nOVERRIDDEN=by-file\n", __env="GREETING=hi-from-dotenv\n")
    ok(cpc, f, "up", "-d")
    env = cpc.ok("exec", "t-app-1", "env").stdout.splitlines()
    assert {"FROM_FILE=file-value", "OVERRIDDEN=by-environment", "FROM_DOTENV=hi-from-dotenv"} <= set(env)
    assert sorted(ids(cpc, f)) == ["t-app-1"]  # the debug profile is off
    ok(cpc, f, "--profile", "debug", "up", "-d")
    assert sorted(ids(cpc, f)) == ["t-app-1", "t-debug-1"]
    ok(cpc, f, "--profile", "debug", "down")
    assert ids(cpc, f) == {}


def test_up_attached_ctrl_c_stops(cpc: NetPycontain, tmp_path: Path) -> None:
    f = project(tmp_path, """
name: t
services:
  a:
    image: busybox
    command: ["sh", "-c", "trap 'echo bye; exit 0' TERM; echo started; while true; do sleep 0.1; done"]
""")
    proc = subprocess.Popen(cpc.argv("compose", "-f", f, "up"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while "t-a-1" not in ok(cpc, f, "ps").stdout or "started" not in ok(cpc, f, "logs").stdout:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=SETTLE_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "a-1  | started" in out and "a-1  | bye" in out
    assert ok(cpc, f, "ps", "-q").stdout == ""
    ok(cpc, f, "down")


def test_bad_input_is_one_line(cpc: NetPycontain, tmp_path: Path) -> None:
    f = project(tmp_path, "services:\n  a:\n    image: busybox\n    imagee: typo\n")
    res = compose(cpc, f, "up", "-d")
    assert res.returncode == 125 and res.stderr.count("\n") == 1
    assert "compose.yaml:4" in res.stderr and "imagee" in res.stderr
    f = project(tmp_path, BASIC)
    for args, words in ((("nosuch",), "unknown compose command"), (("up", "--scale", "x"), "--scale"),
                        (("exec", "-T", "nosvc", "true"), "no such service: nosvc"),
                        (("up", "-d", "--build", "--no-build"), "conflict"), (("logs", "--tail", "x"), "--tail"),
                        (("port", "db"), "usage")):
        assert_pycontain_error(compose(cpc, f, *args), 125, words)
    assert_pycontain_error(cpc("compose", "-f", tmp_path / "missing.yaml", "ps"), 125, "no such compose file")
    res = compose(cpc, f, "exec", "-T", "db", "true")
    assert res.returncode == 125 and "is the project up?" in res.stderr


def test_config_is_stable_and_complete(cpc: NetPycontain, tmp_path: Path) -> None:
    f = project(tmp_path, BASIC + "    ports: ['8080:80']\nvolumes:\n  data: {}\n")
    one, two = ok(cpc, f, "config").stdout, ok(cpc, f, "config").stdout
    assert one == two
    assert "published: '8080'" in one and "target: 80" in one and "name: t_default" in one
    assert ok(cpc, f, "config", "--services").stdout.split() == ["db", "worker"]
    data = json.loads(ok(cpc, f, "config", "--format", "json").stdout)
    assert data["services"]["worker"]["deploy"]["replicas"] == 2
    assert data["services"]["worker"]["depends_on"] == {"db": {"condition": "service_started", "required": True}}
    assert os.path.exists(f)


def test_killed_up_then_down_leaves_nothing(cpc: NetPycontain, tmp_path: Path) -> None:
    """SIGKILL of `compose up` while it waits on a dependency, and a monitor killed while it attaches a
    container to the project's network: `compose down` (and `gc`) leave nothing behind (the fixture checks)."""
    f = project(tmp_path, f"""
name: t
services:
  a:
    image: busybox
    command: ["sh", "-c", "{LOOP}"]
    healthcheck: {{test: ["CMD", "false"], interval: 100ms, retries: 100000}}
  b:
    image: busybox
    command: ["sh", "-c", "{LOOP}"]
    depends_on:
      a: {{condition: service_healthy}}
""")
    proc = subprocess.Popen(cpc.argv("compose", "-f", f, "up", "-d"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while "t-a-1" not in ok(cpc, f, "ps").stdout:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.communicate(timeout=SETTLE_TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    res = ok(cpc, f, "down")
    assert "t-a-1  Removed" in res.stderr and ids(cpc, f) == {}
    killed = subprocess.run(cpc.argv("compose", "-f", f, "up", "-d", "a"), capture_output=True, text=True,
                            timeout=SETTLE_TIMEOUT * 3, env={**os.environ, "PYCONTAIN_FAULT": "net.veth"})
    assert killed.returncode == 125 and "Traceback" not in killed.stderr, killed.stderr
    ok(cpc, f, "down")
    cpc.ok("gc")


def test_keys_beyond_the_basics(cpc: NetPycontain, tmp_path: Path) -> None:
    """network_mode/ipc service:NAME (that service's container, started first), volumes_from, tmpfs, limits,
    logging, privileged off by default."""
    f = project(tmp_path, f"""
name: t
services:
  side:
    image: busybox
    command: ["sh", "-c", "{LOOP}"]
    network_mode: service:main
    ipc: service:main
    volumes_from: [main:ro]
    tmpfs: [/scratch]
    pids_limit: 64
    mem_limit: 32m
    logging: {{driver: none}}
  main:
    image: busybox
    command: ["sh", "-c", "{LOOP}"]
    hostname: mainhost
    ipc: shareable
    volumes: ["/shared"]
""")
    ok(cpc, f, "up", "-d")
    side, main = inspect(cpc, "t-side-1"), inspect(cpc, "t-main-1")
    assert side["HostConfig"]["NetworkMode"] == f"container:{main['Id']}"  # type: ignore[index]
    assert side["HostConfig"]["PidsLimit"] == 64 and side["HostConfig"]["Memory"] == 32 << 20  # type: ignore[index]
    assert side["HostConfig"]["LogConfig"]["Type"] == "none"  # type: ignore[index]
    assert cpc.ok("exec", "t-side-1", "hostname").stdout == "mainhost\n"
    mounts = cpc.ok("exec", "t-side-1", "cat", "/proc/self/mounts").stdout
    assert " /scratch tmpfs " in mounts and " /shared " in mounts
    res = cpc("exec", "t-side-1", "touch", "/shared/x")
    assert res.returncode == 1 and "Read-only" in res.stderr, res.stderr
    ok(cpc, f, "down", "-v")


def test_build_push_pull_through_a_registry(pc: Pycontain, fresh_registry: LocalRegistry, tmp_path: Path) -> None:
    """build tags the service's image, push sends it to a registry on 127.0.0.1, pull brings it back."""
    ref = f"{fresh_registry.host}/shop/app:1"
    f = project(tmp_path, f"name: t\nservices:\n  app:\n    image: {ref}\n    build: ./app\n")
    (tmp_path / "proj" / "app").mkdir()
    (tmp_path / "proj" / "app" / "Dockerfile").write_text('FROM busybox\nCOPY hello /hello\nCMD ["cat", "/hello"]\n')
    (tmp_path / "proj" / "app" / "hello").write_text("built by compose\n")
    res = pc("compose", "-f", f, "build")
    assert res.returncode == 0 and "Service app  Built" in res.stderr, res.stderr
    image_id = pc.ok("image", "inspect", "--format", "{{.Id}}", ref).stdout
    assert pc("compose", "-f", f, "push").returncode == 0
    pc.ok("rmi", ref)
    res = pc("compose", "-f", f, "pull")
    assert res.returncode == 0, res.stderr
    assert pc.ok("image", "inspect", "--format", "{{.Id}}", ref).stdout == image_id
    assert pc.ok("run", "--rm", ref).stdout == "built by compose\n"
