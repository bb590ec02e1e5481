"""CVE-2021-30465: a symlink swapped in under a mount target sends the mount outside the container.

runc checked a mount target inside the rootfs, then mounted by path: between the two, another container
sharing a volume exchanged a directory on the way for a symlink to "/", and the volume was mounted on
the host's path. pycontain resolves every target with openat2(RESOLVE_IN_ROOT) relative to the rootfs,
creates what is missing relative to descriptors, and mounts on the descriptor (move_mount).

The targets here lead through links to a host path the image does not have (the test's own temporary
directory): resolved on the host, pycontain would create the missing directories there, which the test
sees. Resolved in the container's root, they are created inside it, where the container sees the volume.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from attacks import derived_image, entry, probes  # noqa: F401 - the probes fixture
from cvesupport import no_leaks  # noqa: F401 - the fixture, less other test sessions' objects
from cvesupport import PROBE_DIR, probe_volume
from support import Pycontain, describe, wait_for

pytestmark = pytest.mark.usefixtures("no_leaks")

MARKER = "the volume's own file\n"
RACE_RUNS = 25


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "marker").write_text(MARKER)
    return vol


@pytest.fixture
def linked_image(pc: Pycontain, busybox_tarball: Path, tmp_path: Path) -> str:
    """busybox plus links a mount target may lead through: to "/", up past the root, and to a host path."""
    host_side = tmp_path / "host-side"
    image = derived_image(busybox_tarball, tmp_path / "links.tar.gz", add=[
        entry("to-root", link="/"),
        entry("up", link="../../../../../../../.."),
        entry("to-host", link=str(host_side)),
    ])
    pc.ok("import", "--change", 'CMD ["sh"]', image, "links")
    return "links"


@pytest.mark.parametrize("link", ["to-root", "up", "to-host"])
def test_a_mount_target_through_a_link_lands_inside_the_container(pc: Pycontain, linked_image: str, volume: Path,
                                                                   tmp_path: Path, link: str) -> None:
    name = f"cve-2021-30465-{uuid.uuid4().hex[:8]}"
    # Where the link leads: in the container's root, and, were it followed on the host, on the host.
    leads = {"to-root": Path("/"), "up": Path("/"), "to-host": tmp_path / "host-side"}[link] / name
    res = pc("run", "--rm", "-v", f"{volume}:/{link}/{name}", linked_image, "sh", "-c",
             f"cat {leads}/marker; grep -c ' {leads} ' /proc/self/mountinfo")
    assert not leads.exists(), f"the target was resolved on the host: pycontain created {leads} there"
    assert res.returncode == 0, describe(res)
    assert res.stdout == MARKER + "1\n", "the volume is not where the link leads inside the container: " + describe(res)


def test_a_target_swapped_to_a_link_by_another_container_never_reaches_the_host(
        pc: Pycontain, probes: Path, volume: Path, tmp_path: Path) -> None:  # noqa: F811
    """Another container exchanges /shared/a (a directory) and /shared/b (a link to a host path) as fast
    as it can while containers start with a volume at /shared/a/target."""
    shared = tmp_path / "shared"
    (shared / "a").mkdir(parents=True)
    host_side = tmp_path / "host-side"
    (shared / "b").symlink_to(host_side)
    pc.ok("run", "-d", "--name", "swapper", "-v", f"{shared}:/shared", *probe_volume(probes), "busybox",
          f"{PROBE_DIR}/swap", "/shared/a", "/shared/b", "/shared/stop", "120")
    pc.wait_for_log("swapper", "swapping")
    outcomes = []
    for _ in range(RACE_RUNS):
        res = pc("run", "--rm", "-v", f"{shared}:/shared", "-v", f"{volume}:/shared/a/target", "busybox", "sh", "-c",
                 "grep -cE ' (/shared/[ab]|/tmp/[^ ]*/host-side)/target ' /proc/self/mountinfo")
        # Refused (the walk met a link where a directory was a moment before) or mounted exactly once, in
        # the shared directory (named /shared/b by now if it has been swapped since) or where the link
        # leads inside the container.
        assert (res.returncode, res.stdout) in ((0, "1\n"), (125, "")), describe(res)
        assert "Traceback" not in res.stderr, describe(res)
        outcomes.append(res.returncode)
        assert not host_side.exists(), f"a mount target was resolved on the host after {len(outcomes)} runs"
    (shared / "stop").touch()
    swapped = wait_for("the swapper to stop", lambda: next(
        (line for line in pc.ok("logs", "swapper").stdout.splitlines() if line.startswith("swapped ")), None))
    assert int(swapped.split()[1]) > 0, "the race never ran: nothing was swapped"
    assert 0 in outcomes, f"no container started while the links were swapped: {outcomes}"
    assert not host_side.exists()
