"""`pycontain build` against `podman build` (Debian's podman 4.3, buildah inside, runc as its runtime).

For every context in tests/build_corpus, both tools build the same Dockerfile FROM the same base (the
shared Alpine minirootfs, imported in each as localhost/corpus-base:3.20) and the two images' file trees
must be the same: paths, types, modes, owners, contents, link targets and hard-link groups, with only
what tree_support.EXCLUDED lists (each with its reason) left out. A few facts per case are also checked
on both trees, so that the corpus proves what its Dockerfiles say even where both tools would agree.

Then the other direction of interop: an image pycontain built, `pycontain save`d and `podman load`ed (or
pushed to a registry on 127.0.0.1 and `podman pull`ed), runs under podman with the same output as under
`pycontain run`: ENTRYPOINT, CMD, ENV, WORKDIR and USER honoured.

Podman keeps everything under the module's tmp dir (engines.Podman: --root, a short --runroot in /tmp,
private containers.conf/storage.conf/registries.conf, a cgroup parent of its own) and every podman
command runs in a private mount namespace with a tmpfs over /var/lib, where containers/image keeps its
blob-info cache for root whatever --root says. Builds use --network none; no image is ever pulled from
anywhere but the test's own loopback registry. The module ends with the repo's leak check.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import leaks
import pytest
from support import ALPINE_TARBALL, COMMAND_TIMEOUT, Pycontain, describe

pytest.register_assert_rewrite("engines", "tree_support", "images_support")

from engines import ULIMITS, CgroupParent, Podman, ok  # noqa: E402 - after the registration above
from images_support import LocalRegistry  # noqa: E402
from tree_support import Entry, archive_config, comparable, tree_diff, tree_from_archive  # noqa: E402

PODMAN = shutil.which("podman")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(PODMAN is None, reason="podman is not installed (scripts/install --test-deps installs it)"),
]

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "build_corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "Dockerfile").is_file())
BASE_REF = "localhost/corpus-base:3.20"
# crun refuses this kind of host's hybrid cgroups; runc is what the issue measures podman with.
RUNC = shutil.which("runc") or "/usr/sbin/runc"
# --format docker: in its default OCI format buildah ignores SHELL (and HEALTHCHECK, ONBUILD), which
# the OCI image config cannot hold; Docker's format is what `pycontain build` follows.
PODMAN_BUILD = ("build", "--format", "docker", "--network", "none", *ULIMITS)
BUILD_TIMEOUT = 300
BUILD_ARG = re.compile(r"^# corpus-build-arg: (\S+=\S*)$", re.M)
# Podman's and containers/image's blob-info cache lives in /var/lib/containers/cache for root whatever
# --root says: a tmpfs over /var/lib, in a mount namespace of the command's own, keeps it off the host.
PRIVATE = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
           'mount -t tmpfs tmpfs /var/lib && exec "$@"', "sh"]

# Expected facts per case, checked on both trees: path -> (type, mode, uid, gid), None where the path
# must be absent. A mode of None is not checked (files from the context keep the checkout's modes).
EXPECT: dict[str, dict[str, tuple[str, int | None, int, int] | None]] = {
    "copy_paths": {
        "file-renamed": ("file", None, 0, 0), "into-dir/a.txt": ("file", None, 0, 0),
        "multi/b.txt": ("file", None, 0, 0), "glob/a.txt": ("file", None, 0, 0), "glob/notes.md": None,
        "confs/x.conf": ("file", None, 0, 0), "confs/z.txt": None, "dir-contents/one": ("file", None, 0, 0),
        "dir-contents/dir": None, "dir-slash/sub/two": ("file", None, 0, 0), "etc/one": ("file", None, 0, 0),
        "existing-parent/deeper/two": ("file", None, 0, 0), "srv/relative/a.txt": ("file", None, 0, 0),
        "srv/b.txt": ("file", None, 0, 0), "usr/local/bin/tool": ("file", 0o755, 0, 0),
        "run/a.txt": ("file", None, 0, 0), "var/run": ("symlink", 0o777, 0, 0), "etc/a.txt": ("file", None, 0, 0),
    },
    "copy_chown_chmod": {
        "own/by-name": ("file", None, 65534, 65534), "own/by-number": ("file", None, 1234, 5678),
        "own/user-only": ("file", None, 1, 1), "own/uid-only": ("file", None, 42, 42),
        "own/dir/inner/h": ("file", None, 2, 1234), "mode/f1": ("file", 0o600, 0, 0),
        "mode/f2": ("file", 0o640, 0, 0), "mode/setuid": ("file", 0o4750, 1234, 1234),
        "new": ("dir", 0o755, 1234, 1234), "new/nested/f": ("file", None, 1234, 1234),
        "chmoddir": ("dir", 0o755, 0, 0), "chmoddir/inner": ("dir", 0o700, 0, 0), "chmoddir/g": ("file", 0o700, 0, 0),
    },
    "add_tar": {
        "opt/top/file": ("file", 0o640, 1000, 1000), "opt/top/link": ("symlink", 0o777, 1000, 1000),
        "opt/top/sub": ("dir", 0o750, 1000, 1000), "unpacked-here/top/sub/deep": ("file", 0o600, 1000, 1000),
        "opt/archive.tar.gz": None, "unpacked-here/archive.tar.gz": None, "plain-added.txt": ("file", None, 0, 0),
        "opt/top/capped": ("file", 0o755, 1000, 1000), "formats/more/empty": ("dir", 0o700, 1000, 1000),
        "formats/uncompressed/file": ("file", 0o644, 1000, 1000), "formats/more.tar.xz": None,
    },
    "run_changes": {
        "etc/new-file": None, "media": None, "var/made": None, "etc/udhcpc/udhcpc.conf": None,
        "etc/udhcpc.conf.moved": ("file", 0o644, 0, 0), "etc/shells": ("file", 0o600, 0, 0),
        "etc/issue": ("file", 0o644, 1, 2), "home": ("dir", 0o751, 0, 0), "etc/motd": ("file", 0o644, 0, 0),
        "etc/fstab": ("dir", 0o755, 0, 0), "etc/fstab/f": ("file", 0o644, 0, 0),
        "usr/share/udhcpc": ("file", 0o644, 0, 0), "usr/share/udhcpc/default.script": None,
    },
    "opaque_dir": {
        "etc/apk/only": ("file", 0o644, 0, 0), "etc/apk/world": None, "etc/apk/keys": None,
        "usr/share/udhcpc/default.script": None, "usr/share/udhcpc/sub/new": ("file", 0o644, 0, 0),
        "fresh": ("dir", 0o700, 0, 0), "fresh/a": None, "fresh/keep/k": None, "fresh/b": ("file", 0o644, 0, 0),
    },
    "links_setuid": {
        "links/rel": ("symlink", 0o777, 0, 0), "links/abs": ("symlink", 0o777, 0, 0),
        "dangling": ("symlink", 0o777, 0, 0), "usr/local/bin/bb": ("file", 0o4755, 0, 0),
        "setgid": ("file", 0o2711, 0, 0), "sticky": ("dir", 0o1777, 0, 0),
    },
    "multistage": {
        "etc/result": ("file", 0o644, 0, 0), "etc": ("dir", 0o700, 0, 0), "bin/busybox": ("file", 0o755, 1234, 1234),
        "copied-file": ("file", 0o644, 0, 0), "alpine-release": ("file", 0o644, 0, 0),
        "from-image/os-release": ("file", 0o644, 0, 0), "etc/passwd": None, "out": None,
    },
    "workdir_user": {
        "app/deep/dir/sub": ("dir", 0o755, 0, 0), "app": ("dir", 0o755, 65534, 0), "app/deep": ("dir", 0o700, 0, 0),
        "tmp/owned-by-nobody": ("file", 0o644, 65534, 65534), "tmp/owned-by-number": ("file", 0o644, 1234, 5678),
    },
    "dockerignore": {
        "ctx/keep.txt": ("file", None, 0, 0), "ctx/app.log": None, "ctx/logs/keep.log": ("file", None, 0, 0),
        "ctx/logs/drop.log": None, "ctx/deep/a/b/c.log": None, "ctx/deep/a/b/c.txt": ("file", None, 0, 0),
        "ctx/secret.key": None, "ctx/secretive": None, "ctx/tmp/scratch": None, "ctx/tmp/keep": ("file", None, 0, 0),
        "ctx/src/test": None,
        "ctx/src/main.c": ("file", None, 0, 0), "ctx/docs/readme.md": None, "ctx/docs/guide.txt": ("file", None, 0, 0),
        "ctx/Dockerfile": ("file", None, 0, 0), "ctx/.dockerignore": ("file", None, 0, 0),
    },
    "args_env": {
        "opt/app/custom/f.txt": ("file", None, 0, 0), "opt/app/default": None,
        "opt/app/data/conf.txt": ("file", None, 0, 0), "fallback/f.txt": ("file", None, 0, 0),
        "alt/f.txt": ("file", None, 0, 0), "argchown": ("file", None, 1234, 1234),
        "lit$DEST/f.txt": ("file", None, 0, 0),
    },
    "heredoc_shell": {"hd/copied": ("file", 0o644, 0, 0)},
    "run_config": {"opt/bin/show": ("file", 0o755, 0, 0), "work/here/made-here": ("file", 0o644, 0, 0)},
}
# Expected contents (what RUN steps wrote, so what the shell, the user and the expansion were).
CONTENT: dict[str, dict[str, bytes]] = {
    "workdir_user": {
        "app/deep/dir/here": b"/app/deep/dir\n", "pwd2": b"/app/deep/dir/sub\n",
        "tmp/id-nobody": b"uid=65534(nobody) gid=65534(nobody) groups=65534(nobody)\n",
        "tmp/id-number": b"uid=1234 gid=5678 groups=5678\n",
    },
    "args_env": {
        "opt/app/data/w/args.txt": b"custom /opt/app data legacy form\n", "opt/app/changed/flavor": b"custom\n",
        # an ARG declared before FROM is not visible inside the stage unless declared again there
        "opt/app/changed/base-outside-stage": b"\n",
    },
    "heredoc_shell": {
        "hd/one": b"line one\n", "hd/two": b"a\nb\n", "hd/three": b"fromsh\n", "hd/copied": b"copied text\n",
        "hd/mark": b"shell-changed\n", "hd/second": b"/bin/sh second\n",
    },
    "add_tar": {"opt/top/file": b"in the archive\n"},
}
# Hard-link groups that must exist (every path of the group names the same file).
LINKED: dict[str, list[tuple[str, ...]]] = {
    "links_setuid": [("hard-a", "hard-b", "hl/c"), ("bb-hard", "bin/busybox")],
    "add_tar": [("opt/top/file", "opt/top/hard"), ("unpacked-here/top/file", "unpacked-here/top/hard")],
}
# File capabilities (security.capability in hex: revision 2, cap_net_bind_service permitted + effective).
CAPABILITIES: dict[str, dict[str, str]] = {
    "add_tar": {"opt/top/capped": "0100000200040000000000000000000000000000",
                "unpacked-here/top/capped": "0100000200040000000000000000000000000000"},
}
# run_config's expected output (ENTRYPOINT + CMD, USER nobody, WORKDIR, ENV).
RUN_OUTPUT = ("args={args}\nuser=65534:65534\npwd=/work/here\ngreeting=hello\n"
              "path=/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n")


# The image config fields a Dockerfile sets (Docker's names, as podman's --format docker writes them).
CONFIG_KEYS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Shell", "ExposedPorts", "Volumes", "StopSignal",
               "Healthcheck", "OnBuild", "Labels")
# buildah stamps its version on every image it builds; pycontain need not.
BUILDER_LABELS = ("io.buildah.version",)


def run_config_of(archive: Path) -> dict[str, object]:
    """The config fields a Dockerfile decides, comparable between builders: an empty value is no value
    (null, [], {} and "" all mean "not set" to an engine), the builder's own label is left out, and Env
    is sorted (its order means nothing once every name appears once, as it does after ENV)."""
    config = archive_config(archive).get("config") or {}
    assert isinstance(config, dict), config
    out: dict[str, object] = {}
    for key in CONFIG_KEYS:
        value = config.get(key)
        if key == "Labels" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in BUILDER_LABELS}
        if key == "Env" and isinstance(value, list):
            value = sorted(value)
        if value not in (None, [], {}, ""):
            out[key] = value
    return out


def build_args(case: str) -> list[str]:
    text = (CORPUS / case / "Dockerfile").read_text()
    return [arg for value in BUILD_ARG.findall(text) for arg in ("--build-arg", value)]


@dataclasses.dataclass
class Builders:
    """Both tools, each with the base imported, and the trees built so far (each case is built once)."""

    podman: Podman
    pc: Pycontain
    work: Path
    # buildah runs each RUN step in exactly the --cgroup-parent it is given (not below it), and runc
    # cannot set a v1 device deny-all on a cgroup that has children (podman run's containers and conmon
    # go below podman.cgroup): the builds get a cgroup of their own.
    build_cgroup: CgroupParent = dataclasses.field(default_factory=CgroupParent)
    podman_trees: dict[str, dict[str, Entry]] = dataclasses.field(default_factory=dict)
    pc_trees: dict[str, dict[str, Entry]] = dataclasses.field(default_factory=dict)
    podman_configs: dict[str, dict[str, object]] = dataclasses.field(default_factory=dict)
    pc_configs: dict[str, dict[str, object]] = dataclasses.field(default_factory=dict)

    def pm(self, *args: str | Path, timeout: float = BUILD_TIMEOUT) -> str:
        """A podman command in its private mount namespace; insists on exit 0, returns stdout."""
        return ok([*PRIVATE, *self.podman.argv(*args)], env=self.podman.env, timeout=timeout).stdout

    def podman_tree(self, case: str) -> dict[str, Entry]:
        if case not in self.podman_trees:
            ctx = CORPUS / case
            dockerfile = ctx / "Dockerfile.podman" if (ctx / "Dockerfile.podman").is_file() else ctx / "Dockerfile"
            tag = f"localhost/corpus-{case.replace('_', '-')}:podman"
            self.pm(*PODMAN_BUILD, "-q", "--cgroup-parent", self.build_cgroup.path, *build_args(case),
                    "-f", dockerfile, "-t", tag, ctx)
            archive = self.work / f"podman-{case}.tar"
            self.pm("save", "-q", "--format", "docker-archive", "-o", archive, tag)
            self.podman_trees[case] = comparable(tree_from_archive(archive))
            self.podman_configs[case] = run_config_of(archive)
            archive.unlink()
        return self.podman_trees[case]

    def pc_tree(self, case: str) -> dict[str, Entry]:
        if case not in self.pc_trees:
            tag = f"localhost/corpus-{case.replace('_', '-')}:pycontain"
            self.pc.ok("build", "-q", "--network", "none", *build_args(case), "-t", tag, CORPUS / case,
                       timeout=BUILD_TIMEOUT)
            archive = self.work / f"pycontain-{case}.tar"
            self.pc.ok("save", "-o", archive, tag, timeout=BUILD_TIMEOUT)
            self.pc_trees[case] = comparable(tree_from_archive(archive))
            self.pc_configs[case] = run_config_of(archive)
            archive.unlink()
        return self.pc_trees[case]


@pytest.fixture(scope="module")
def builders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builders]:
    work = tmp_path_factory.mktemp("build-podman")
    snapshot = leaks.snapshot(work / "leakcheck-before.json")
    podman = Podman(work / "podman", RUNC)
    pc = Pycontain(work / "pcroot")
    problems: list[str] = []
    b = Builders(podman, pc, work)
    try:
        b.pm("import", "-q", ALPINE_TARBALL, BASE_REF)
        pc.ok("import", ALPINE_TARBALL, BASE_REF)
        yield b
    finally:
        pc.remove_all()
        problems += podman.cleanup()
        problems += b.build_cgroup.remove()
        # Podman's store holds overlay layers owned by many users; nothing of it is mounted any more
        # (every command ran in a mount namespace that is gone), so it is plain files to delete.
        shutil.rmtree(work / "podman", ignore_errors=True)
        problems += leaks.leaks_since(snapshot, tmp_path_factory.getbasetemp())
    assert not problems, "the build tests left objects behind:\n" + "\n".join(problems)


def check_facts(case: str, tree: dict[str, Entry], who: str) -> list[str]:
    wrong = []
    for path, want in EXPECT.get(case, {}).items():
        got = tree.get(path)
        if want is None:
            if got is not None:
                wrong.append(f"{who}: /{path} should be absent, is {got[:4]}")
            continue
        kind, mode, uid, gid = want
        if got is None or got[0] != kind or (mode is not None and got[1] != mode) or got[2:4] != (uid, gid):
            shown = f"{kind} {'any' if mode is None else oct(mode)} {uid}:{gid}"
            wrong.append(f"{who}: /{path} should be {shown}, is {got[:4] if got else 'absent'}")
    for path, data in CONTENT.get(case, {}).items():
        got = tree.get(path)
        if got is None or got[4] != hashlib.sha256(data).hexdigest():
            wrong.append(f"{who}: /{path} should hold {data!r}")
    for path, capability in CAPABILITIES.get(case, {}).items():
        got = tree.get(path)
        if got is None or got[6] != capability:
            wrong.append(f"{who}: /{path} should have the capability {capability}, has {got[6] if got else None}")
    for group in LINKED.get(case, []):
        for path in group:
            got = tree.get(path)
            if got is None or not set(group) <= set(got[5]):
                wrong.append(f"{who}: /{path} should be one file with {', '.join(group)}; is {got}")
    return wrong


def test_every_case_has_expectations() -> None:
    """A new corpus case comes with facts of its own, not only the comparison."""
    assert CASES and set(CASES) == set(EXPECT), sorted(set(CASES) ^ set(EXPECT))


@pytest.mark.parametrize("case", CASES)
def test_podman_build_gives_the_expected_tree(builders: Builders, case: str) -> None:
    """The corpus and the tree applier checked against podman alone: the reference side is right."""
    wrong = check_facts(case, builders.podman_tree(case), "podman")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("case", CASES)
def test_pycontain_build_gives_podmans_tree(builders: Builders, case: str) -> None:
    theirs = builders.podman_tree(case)
    ours = builders.pc_tree(case)
    wrong = check_facts(case, ours, "pycontain")
    differences = tree_diff(theirs, ours)
    assert not (wrong or differences), (
        f"{case}: {len(differences)} path(s) differ\n" + "\n".join(wrong + differences[:80]))


@pytest.mark.parametrize("case", CASES)
def test_pycontain_build_gives_podmans_config(builders: Builders, case: str) -> None:
    theirs = builders.podman_configs.get(case) or (builders.podman_tree(case) and builders.podman_configs[case])
    ours = builders.pc_configs.get(case) or (builders.pc_tree(case) and builders.pc_configs[case])
    differences = [f"{key}: podman {theirs.get(key)!r} | pycontain {ours.get(key)!r}"
                   for key in CONFIG_KEYS if theirs.get(key) != ours.get(key)]
    assert not differences, f"{case}: the image configs differ\n" + "\n".join(differences)


def run_config_image(builders: Builders) -> str:
    builders.pc_tree("run_config")
    return "localhost/corpus-run-config:pycontain"


def pycontain_outputs(pc: Pycontain, image: str) -> tuple[str, str]:
    plain = pc.ok("run", "--rm", "--network", "none", image).stdout
    with_args = pc.ok("run", "--rm", "--network", "none", image, "x", "y").stdout
    return plain, with_args


def podman_outputs(builders: Builders, image: str) -> tuple[str, str]:
    run = builders.podman.run_args("--rm", "--network", "none", image)
    return builders.pm(*run, timeout=COMMAND_TIMEOUT), builders.pm(*run, "x", "y", timeout=COMMAND_TIMEOUT)


def test_pycontain_built_image_runs_under_podman_after_save_and_load(builders: Builders) -> None:
    image = run_config_image(builders)
    ours = pycontain_outputs(builders.pc, image)
    archive = builders.work / "run-config.tar"
    builders.pc.ok("save", "-o", archive, image)
    loaded = builders.pm("load", "-q", "-i", archive)
    assert image in loaded, loaded
    assert podman_outputs(builders, image) == ours, "the same image gives other output under podman"
    # What the output must be: podman's own build of the same Dockerfile gives it (no accident), and
    # so must pycontain's.
    expected = (RUN_OUTPUT.format(args="default-arg"), RUN_OUTPUT.format(args="x y"))
    builders.podman_tree("run_config")
    assert podman_outputs(builders, "localhost/corpus-run-config:podman") == expected
    config = archive_config(archive).get("config")
    assert ours == expected, f"pycontain's build of run_config runs wrongly; its image config: {config}"


def test_pycontain_built_image_runs_under_podman_after_push_and_pull(builders: Builders, tmp_path: Path) -> None:
    image = run_config_image(builders)
    registry = LocalRegistry(tmp_path / "registry")
    try:
        remote = f"{registry.host}/corpus/run-config:1"
        builders.pc.ok("tag", image, remote)
        res = builders.pc("push", "-q", remote, timeout=BUILD_TIMEOUT)
        assert res.returncode == 0, describe(res)
        builders.pm("pull", "-q", "--tls-verify=false", remote)
        assert podman_outputs(builders, remote) == pycontain_outputs(builders.pc, image)
    finally:
        registry.stop()
