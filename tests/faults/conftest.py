"""The fault suite runs like the integration tests: real kernel, the real `pycontain` command.

The integration suite's fixtures (pc, no_leaks, assert_leak_free, busybox_tarball, ...) and its root
check are re-used as they are, as tests/security/conftest.py does: tests/integration/conftest.py is loaded
under a name of its own (once, whichever of the two directories asks first), and tests/integration is put
on sys.path so tests here import `support`, `leaks`, `images_support`, `netns_support` and `oci_support`.
The loopback registry fixtures (registry, pcr) come from images_support.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_INTEGRATION = Path(__file__).resolve().parent.parent / "integration"
if str(_INTEGRATION) not in sys.path:
    sys.path.insert(0, str(_INTEGRATION))

_integration = sys.modules.get("integration_conftest")
if _integration is None:
    _spec = importlib.util.spec_from_file_location("integration_conftest", _INTEGRATION / "conftest.py")
    assert _spec is not None and _spec.loader is not None
    _integration = importlib.util.module_from_spec(_spec)
    sys.modules["integration_conftest"] = _integration
    _spec.loader.exec_module(_integration)

# Every public name: the fixtures and the pytest_configure root check become this directory's too.
globals().update({k: v for k, v in vars(_integration).items() if not k.startswith("_") and k != "annotations"})

import leaks  # noqa: E402 - importable only once tests/integration is on sys.path
from images_support import pcr, registry  # noqa: E402,F401 - fixtures, re-exported
from fault_support import own_leaks  # noqa: E402
from netns_support import NetNs, NetPycontain, leakcheck_wrapper  # noqa: E402

@pytest.fixture
def assert_leak_free(leak_snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[], None]:
    """The integration suite's check (its no_leaks uses this one here), with fault_support.own_leaks's
    stricter attribution of what is another session's."""
    def check() -> None:
        found = own_leaks(leak_snapshot, tmp_path_factory.getbasetemp())
        assert not found, "pycontain left host objects behind:\n" + "\n".join(found)

    return check


@pytest.fixture
def npc(tmp_path: Path, ns: NetNs, busybox_tarball: Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetPycontain]:
    """pycontain inside the test's namespace with busybox imported. leakcheck runs inside that namespace
    too (links and nft rules are per namespace; mounts, cgroups and processes are the host's anyway):
    leaks.snapshot and leaks.leaks_since read leaks.LEAKCHECK, so that is the name patched."""
    monkeypatch.setattr(leaks, "LEAKCHECK", leakcheck_wrapper(tmp_path, ns))
    p = NetPycontain(tmp_path / "root", ns)
    p.ok("import", "--change", 'CMD ["sh"]', busybox_tarball, "busybox")
    p.snapshot = leaks.snapshot(tmp_path / "leakcheck-netns-before.json")  # type: ignore[attr-defined]
    yield p
    p.remove_all()


@pytest.fixture(scope="session")
def rootfs_source(busybox_tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox rootfs, extracted once, for pycontain-oci bundles. This process becomes a subreaper
    (as test_oci_bundles.py makes it): the init of a container whose `create` was killed comes here."""
    import subprocess

    from oci_support import become_subreaper
    from support import COMMAND_TIMEOUT

    become_subreaper()
    root = tmp_path_factory.mktemp("oci-rootfs") / "rootfs"
    root.mkdir()
    subprocess.run(["tar", "-xzf", str(busybox_tarball), "-C", str(root)], check=True, timeout=COMMAND_TIMEOUT)
    return root
