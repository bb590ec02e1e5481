"""The child's rootfs step list, run against a fake kernel at the syscalls seam.

These prove the order and the confinement of the mounts without root: every mount made before
pivot_root targets a path inside the container's rootfs, and symlinks in the image cannot move one out.
"""

import os

import pytest

from pycontain import mounts, syscalls
from pycontain.config import BindMount


class FakeKernel:
    errno = 0

    def __init__(self):
        self.calls = []

    def pc_mount(self, source, target, fstype, flags, data):
        self.calls.append(("mount", source.decode(), target.decode(), fstype and fstype.decode(), flags,
                           data and data.decode()))
        return 0

    def pc_pivot_root(self, new, old):
        self.calls.append(("pivot_root", new.decode(), old.decode()))
        return 0

    def pc_umount2(self, target, flags):
        self.calls.append(("umount2", target.decode(), flags))
        return 0

    def pc_mknod(self, path, mode, major, minor):
        open(path, "w").close()
        self.calls.append(("mknod", path, major, minor))


@pytest.fixture
def kernel():
    fake = FakeKernel()
    previous = syscalls.install(fake)
    cwd = os.getcwd()
    yield fake
    os.chdir(cwd)
    syscalls.install(previous)


def make_plan(tmp_path, **kw):
    root = tmp_path / "rootfs"
    root.mkdir()
    etc = tmp_path / "etcfiles"
    etc.mkdir()
    files = {}
    for name in ("hostname", "hosts", "resolv.conf"):
        (etc / name).write_text("x\n")
        files[f"/etc/{name}"] = str(etc / name)
    args = dict(rootfs=str(root), lowerdirs=("/l/bottom", "/l/top"), upperdir="/u", workdir="/w", mounts=(),
                etc_files=files, read_only=False, container_workdir="/app")
    args.update(kw)
    return mounts.RootfsPlan(**args)


def test_step_order_slave_overlay_proc_dev_sys_then_pivot(kernel, tmp_path):
    plan = make_plan(tmp_path)
    mounts.setup_rootfs(plan)
    kinds = [c[3] if c[0] == "mount" else c[0] for c in kernel.calls]
    assert kinds[0] is None and kernel.calls[0][2] == "/"  # make / a slave first
    assert kernel.calls[0][4] == syscalls.MS_REC | syscalls.MS_SLAVE
    assert kinds[1] == "overlay"
    assert kinds.index("proc") < kinds.index("pivot_root")
    assert kinds.index("sysfs") < kinds.index("pivot_root")
    assert kernel.calls[kinds.index("pivot_root")] == ("pivot_root", ".", ".")
    assert ("umount2", ".", syscalls.MNT_DETACH) in kernel.calls


def test_overlay_lists_the_top_layer_first(kernel, tmp_path):
    mounts.setup_rootfs(make_plan(tmp_path))
    overlay = next(c for c in kernel.calls if c[0] == "mount" and c[3] == "overlay")
    assert overlay[5] == "lowerdir=/l/top:/l/bottom,upperdir=/u,workdir=/w"


def test_every_mount_before_pivot_root_stays_inside_the_rootfs(kernel, tmp_path):
    plan = make_plan(tmp_path, mounts=(BindMount(str(tmp_path), "/data", True),))
    mounts.setup_rootfs(plan)
    pivot = next(i for i, c in enumerate(kernel.calls) if c[0] == "pivot_root")
    for call in kernel.calls[1:pivot]:
        if call[0] == "mount":
            assert call[2].startswith(plan.rootfs), call


def test_only_the_standard_devices_are_created(kernel, tmp_path):
    mounts.setup_rootfs(make_plan(tmp_path))
    nodes = {os.path.basename(c[1]): (c[2], c[3]) for c in kernel.calls if c[0] == "mknod"}
    assert nodes == mounts.DEVICES


def test_read_only_bind_is_remounted_read_only(kernel, tmp_path):
    mounts.setup_rootfs(make_plan(tmp_path, mounts=(BindMount(str(tmp_path), "/data", True),)))
    binds = [c for c in kernel.calls if c[0] == "mount" and c[1] == str(tmp_path)]
    assert len(binds) == 2 and binds[1][4] & syscalls.MS_RDONLY and binds[1][4] & syscalls.MS_REMOUNT


def test_symlinks_in_the_image_resolve_inside_the_rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "real").mkdir(parents=True)
    os.symlink("/", root / "evil")             # absolute link to the host root
    os.symlink("../../../../etc", root / "up")  # relative link climbing out
    os.symlink("/real", root / "good")
    r = str(root)
    assert mounts.resolve_inside(r, "/evil/etc/passwd") == f"{r}/etc/passwd"
    assert mounts.resolve_inside(r, "/up/shadow") == f"{r}/etc/shadow"
    assert mounts.resolve_inside(r, "/good/x") == f"{r}/real/x"
    assert mounts.resolve_inside(r, "/../../x") == f"{r}/x"


def test_symlink_loops_are_refused(tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    os.symlink("/b", root / "a")
    os.symlink("/a", root / "b")
    with pytest.raises(OSError):
        mounts.resolve_inside(str(root), "/a/x")


def test_mount_targets_are_created_inside_through_symlinks(tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    os.symlink("/", root / "evil")
    target = mounts.make_target(str(root), "/evil/newdir/file", False)
    assert target == f"{root}/newdir/file" and os.path.isfile(target)
    assert not os.path.exists("/newdir")
