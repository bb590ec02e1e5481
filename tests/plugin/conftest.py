"""Tests of the pytest plugin (pycontain/pytest_plugin.py) itself.

Each test writes a small test module, runs pytest on it in a process of its own (as a user's `pytest`
would run: the plugin comes from the installed pytest11 entry point) and checks the outcome, the output
and that nothing of the inner run is left: no container or network in its state root, and no host object
(pycontain.leakcheck). The inner runs keep their basetemp inside this test's tmp_path.

    inner        run pytest on a source text: inner(source, *args) -> Inner(outcomes, output, basetemp)
    rootfs       a busybox root filesystem tarball (rootfs/build.py), built once per session
    archive      the same image as a docker-archive tar (rootfs/build.py --docker-archive)
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from plugin_support import REPO, TIMEOUT, Inner, summary

from pycontain import leakcheck


@pytest.fixture
def inner(tmp_path: Path) -> Iterator[Callable[..., Inner]]:
    runs = []

    def run(source: str, *args: str, conftest: str | None = None) -> Inner:
        n = len(runs)
        work = tmp_path / f"inner{n}"
        work.mkdir()
        (work / f"test_inner{n}.py").write_text(source)
        if conftest is not None:
            (work / "conftest.py").write_text(conftest)
        basetemp = tmp_path / f"basetemp{n}"
        res = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q",
                              f"--basetemp={basetemp}", *args, str(work)],
                             cwd=work, capture_output=True, text=True, timeout=TIMEOUT)
        output = res.stdout + res.stderr
        result = Inner(summary(res.stdout), output, basetemp)
        runs.append(result)
        return result

    before = leakcheck.take()
    yield run
    # Nothing of the inner runs remains on the host (their network namespaces went with them). As the
    # plugin's own check does: a namespaced process nothing places is another tool's on this shared machine.
    # pycontain never names a network namespace (a /run/netns name, and its nsfs mount, come from `ip netns
    # add`, which no inner test runs): one appearing meanwhile is another session's.
    found = [(kind, obj) for kind, obj in leakcheck.new_since(before)
             if kind != "netns" and not (kind == "mount" and obj.startswith(leakcheck.NETNS_DIR + "/"))]
    found = leakcheck.settled(found, leakcheck.Attribution([tmp_path], unplaced_containers=False))
    assert not found, "the inner pytest runs left host objects behind:\n" + "\n".join(
        leakcheck.line(kind, obj) for kind, obj in found)


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plugin-images") / "plugin-busybox.tar.gz"
    subprocess.run([sys.executable, str(REPO / "rootfs" / "build.py"), str(out)], check=True,
                   capture_output=True, timeout=TIMEOUT)
    return out


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plugin-archive") / "plugin-busybox-archive.tar"
    subprocess.run([sys.executable, str(REPO / "rootfs" / "build.py"), "--docker-archive", "--tag",
                    "plugin-bb:1", str(out)], check=True, capture_output=True, timeout=TIMEOUT)
    return out
