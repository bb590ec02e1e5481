"""The child's rootfs step list, run against a fake kernel at the syscalls seam.

These prove the order and the confinement of the mounts without root: every mount made before
pivot_root targets a path inside the container's rootfs, and symlinks in the image cannot move one out.
"""

import os

import pytest

from pycontain import mounts, syscalls
from pycontain.config import BindMount, ContainerConfig, ResolvedConfig, Security
from pycontain.errors import PycontainError
from pycontain.oci import executor
from pycontain import oci as ocispec


def _where(path):
    """A /proc/self/fd/N target, as the path it stands for (the fake records paths, not descriptors)."""
    return os.readlink(path) if path.startswith("/proc/self/fd/") else path


class FakeKernel:
    """Records mount calls instead of making them; path lookups (openat2) are the real kernel's,
    which needs no privilege, so confinement is checked against real resolution."""

    errno = 0

    def __init__(self):
        from pycontain import _native

        self.real = _native.lib
        self.calls = []
        self.trees = {}

    def pc_mount(self, source, target, fstype, flags, data):
        self.calls.append(("mount", source.decode(), _where(target.decode()), fstype and fstype.decode(), flags,
                           data and data.decode()))
        return 0

    def pc_openat2(self, dirfd, path, flags, mode, resolve):
        fd = self.real.pc_openat2(dirfd, path, flags, mode, resolve)
        if fd < 0:
            from pycontain import _native
            self.errno = _native.ffi.errno
        return fd

    def pc_open_tree(self, dirfd, path, flags):
        source = path.decode() if path else os.readlink(f"/proc/self/fd/{dirfd}")
        fd = os.open("/", os.O_PATH)
        self.trees[fd] = source
        return fd

    def pc_mount_setattr(self, fd, path, flags, attr_set, attr_clr, propagation):
        self.calls.append(("mount_setattr", self.trees.get(fd) or os.readlink(f"/proc/self/fd/{fd}"), flags,
                           attr_set))
        return 0

    def pc_move_mount(self, from_fd, from_path, to_fd, to_path, flags):
        self.calls.append(("bind", self.trees[from_fd], os.readlink(f"/proc/self/fd/{to_fd}")))
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
def kernel(monkeypatch):
    fake = FakeKernel()
    # The fake makes regular files, not device nodes: accept its /dev/null.
    monkeypatch.setattr(mounts, "checked_null", lambda dev: os.open("null", os.O_PATH, dir_fd=dev))
    # After the fake pivot_root, "/" is still the host's: mask the test's own directory instead.
    monkeypatch.setattr(mounts, "MASKED_PATHS", ())
    monkeypatch.setattr(mounts, "READONLY_PATHS", ())
    previous = syscalls.install(fake)
    cwd = os.getcwd()
    yield fake
    os.chdir(cwd)
    syscalls.install(previous)


def make_plan(tmp_path, mounts=(), read_only=False):
    """The plan the executor makes of the front end's spec for a container: the same path `run` takes."""
    storage = tmp_path / "storage"
    (storage / "rootfs").mkdir(parents=True)
    etc = tmp_path / "etcfiles"
    etc.mkdir()
    files = {}
    for name in ("hostname", "hosts", "resolv.conf"):
        (etc / name).write_text("x\n")
        files[f"/etc/{name}"] = str(etc / name)
    # No seccomp filter: compiling one goes through libseccomp at the syscalls seam, which the fake
    # kernel does not model (test_seccomp_profile.py and the integration tests cover the filter).
    cfg = ContainerConfig(image="x", mounts=tuple(mounts), read_only=read_only,
                          security=Security(seccomp="unconfined"))
    res = ResolvedConfig(argv=("sh",), env=(), workdir="/app", user="", hostname="h")
    spec = ocispec.container_spec("c" * 64, cfg, res, cfg.limits, str(storage), ["/l/bottom", "/l/top"], files)
    spec["annotations"]["org.pycontain.overlay"] = "lowerdir=/l/top:/l/bottom,upperdir=/u,workdir=/w"
    plan = executor.plan(spec, str(storage), "c" * 64)
    plan.rootfs.cgroup_mounts = []
    return plan.rootfs


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
        if call[0] == "bind":
            assert call[2].startswith(plan.rootfs), call


def test_only_the_standard_devices_are_created(kernel, tmp_path):
    mounts.setup_rootfs(make_plan(tmp_path))
    nodes = {os.path.basename(c[1]): (c[2], c[3]) for c in kernel.calls if c[0] == "mknod"}
    assert nodes == mounts.DEVICES


def test_read_only_bind_is_made_read_only_recursively_before_it_is_placed(kernel, tmp_path):
    mounts.setup_rootfs(make_plan(tmp_path, mounts=(BindMount(str(tmp_path), "/data", True),)))
    steps = [c for c in kernel.calls if c[0] in ("mount_setattr", "bind") and c[1] == str(tmp_path)]
    assert [c[0] for c in steps] == ["mount_setattr", "bind"]
    assert steps[0][2] & syscalls.AT_RECURSIVE and steps[0][3] == syscalls.MOUNT_ATTR_RDONLY
    assert steps[1][2] == f"{tmp_path}/storage/rootfs/data"


def make_root(tmp_path):
    root = tmp_path / "rootfs"
    (root / "real").mkdir(parents=True)
    os.symlink("/", root / "evil")             # absolute link to the host root
    os.symlink("../../../../etc", root / "up")  # relative link climbing out
    os.symlink("/real", root / "good")
    return root


def opened(root, path, create=None):
    fd = os.open(root, os.O_PATH)
    try:
        target = mounts.open_in_root(fd, path, create)
        try:
            return os.readlink(f"/proc/self/fd/{target}")
        finally:
            os.close(target)
    finally:
        os.close(fd)


def test_symlinks_in_the_image_resolve_inside_the_rootfs(tmp_path):
    root = make_root(tmp_path)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("")
    (root / "real" / "x").write_text("")
    assert opened(root, "/evil/etc/passwd") == f"{root}/etc/passwd"
    assert opened(root, "/good/x") == f"{root}/real/x"
    assert opened(root, "/../../real") == f"{root}/real"


def test_symlink_loops_are_refused(tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    os.symlink("/b", root / "a")
    os.symlink("/a", root / "b")
    with pytest.raises(OSError):
        opened(root, "/a/x")


def test_mount_targets_are_created_inside_through_symlinks(tmp_path):
    root = make_root(tmp_path)
    assert opened(root, "/evil/newdir/file", "file") == f"{root}/newdir/file"
    assert os.path.isfile(root / "newdir" / "file")
    assert opened(root, "/up/shadowdir", "dir") == f"{root}/etc/shadowdir"
    assert not os.path.exists("/newdir")


def test_magic_links_are_refused():
    # The host's own procfs stands in for the container's: /proc/self/cwd is a magic link there.
    with pytest.raises(OSError) as e:
        opened("/", "/proc/self/cwd/x")
    assert e.value.errno == 40  # ELOOP: refused, not followed
    with pytest.raises(OSError) as e:
        opened("/", "/proc/self/cwd/newdir", "dir")
    assert e.value.errno == 40


def test_dangling_links_are_followed_inside_when_creating(tmp_path):
    root = tmp_path / "rootfs"
    (root / "var").mkdir(parents=True)
    os.symlink("/run", root / "var" / "run")  # /run does not exist yet
    assert opened(root, "/var/run/app/sock", "file") == f"{root}/run/app/sock"


def test_an_image_whose_dev_is_a_link_is_refused(tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    os.symlink("/proc/self/cwd", root / "dev")
    fd = os.open(root, os.O_PATH)
    try:
        with pytest.raises(PycontainError, match="/dev is a symbolic link"):
            mounts.open_plain_dir(fd, "/dev")
    finally:
        os.close(fd)
