"""An image's file tree, as a dict that two builders' images can be compared by.

    tree_from_archive(path)   a docker-archive (what `pycontain save` and `podman save` write): its
                              layers applied in order, whiteouts included, into {path: Entry}
    apply_layers(tars)        the same for open layer tar streams, lowest first
    comparable(tree)          the tree without what legitimately differs between builders (EXCLUDED)
    tree_diff(a, b)           readable lines for every path whose entry differs, or that one side lacks

The applier is this file's own (the standard library's tarfile, no builder's code), so it judges both
tools by the same rules: a layer's whiteouts (`.wh.NAME` deletes NAME and all below it,
`.wh..wh..opq` hides everything the lower layers had in that directory) apply to the layers below it
only, then the layer's entries are laid over the result; an entry that replaces a directory with a
non-directory takes the directory's contents with it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"

# What a comparison leaves out, each with the reason it may differ between two correct builders.
# Two things are not recorded in an Entry at all:
# - modification times: every builder stamps its own build time on what it writes (and podman on the
#   directories a RUN step touches, /run among them), so they can never agree;
# - extended attributes other than security.capability: Docker's own layer format (moby's
#   pkg/archive) carries only that one, and which others survive (user.*, security.selinux, ...)
#   depends on the builder and on the file system it builds on. The capability is compared.
#
# Not excluded, on purpose: /etc/hosts, /etc/hostname and /etc/resolv.conf, and the mount points of a
# RUN step's container (/proc, /sys, /dev, /run). podman 4.3 leaves none of them behind when a RUN
# step does not touch them, and neither may pycontain, so they are compared like any path. (A RUN
# step that writes /etc/hosts or /etc/resolv.conf is another matter: podman 4.3 keeps those writes in
# the layer, where Docker, whose files there are bind mounts, does not. No corpus case does it.)
EXCLUDED: dict[str, str] = {
    # The root directory's own entry: a base layer made by `podman import` carries `./`, a layer made
    # from a diff or FROM scratch need not; a runtime makes / itself whatever the layers say.
    "": "the root directory's own entry is optional in a layer",
}


@dataclasses.dataclass
class _Inode:
    kind: str  # file, dir, symlink, char, block, fifo
    mode: int  # permission bits with setuid/setgid/sticky (st_mode & 0o7777)
    uid: int
    gid: int
    data: str  # sha256 of a file's content, a symlink's target, "MAJOR:MINOR" of a device, else ""
    capability: str  # the security.capability xattr in hex, else ""


# One path of the tree: (type, mode, uid, gid, content digest or link target, the sorted paths of all
# hard links to the same file when there are several, else (), the file capability in hex or "").
# Implicit parents (a directory a layer never named but whose children it holds) are
# ("dir", -1, -1, -1, "implicit", (), ""): a runtime would make them with whatever defaults it has, so
# two builders only agree there if both leave them out.
Entry = tuple[str, int, int, int, str, tuple[str, ...], str]
CAPABILITY_XATTR = "SCHILY.xattr.security.capability"


def _norm(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"layer member {name!r} climbs out of the root")
    return "/".join(parts)


def _kind(member: tarfile.TarInfo) -> str:
    if member.isreg():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.ischr():
        return "char"
    if member.isblk():
        return "block"
    if member.isfifo():
        return "fifo"
    raise ValueError(f"layer member {member.name!r} has an unexpected type {member.type!r}")


class _Tree:
    def __init__(self) -> None:
        self.nodes: dict[str, _Inode | None] = {}  # None: an implicit parent directory

    def remove(self, path: str) -> None:
        """path and everything below it."""
        prefix = path + "/"
        for name in [n for n in self.nodes if n == path or n.startswith(prefix)]:
            del self.nodes[name]

    def clear_below(self, path: str) -> None:
        prefix = path + "/" if path else ""
        for name in [n for n in self.nodes if n.startswith(prefix) and n != path]:
            del self.nodes[name]

    def ensure_parents(self, path: str) -> None:
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            node = self.nodes.get(parent, "absent")
            if node == "absent" or (node is not None and not isinstance(node, str) and node.kind != "dir"):
                self.remove(parent)
                self.nodes[parent] = None

    def apply(self, tar: tarfile.TarFile) -> None:
        members = tar.getmembers()
        # Whiteouts first: they speak about the layers below, never about this layer's own entries.
        for m in members:
            path = _norm(m.name)
            base = path.rsplit("/", 1)[-1]
            parent = path.rsplit("/", 1)[0] if "/" in path else ""
            if base == OPAQUE:
                self.clear_below(parent)
            elif base.startswith(WHITEOUT):
                self.remove(f"{parent}/{base[len(WHITEOUT):]}".lstrip("/"))
        for m in members:
            path = _norm(m.name)
            base = path.rsplit("/", 1)[-1]
            if base.startswith(WHITEOUT):
                if "/" in path:
                    self.ensure_parents(path)  # the whiteout's directory exists in this layer
                continue
            if m.islnk():
                target = self.nodes.get(_norm(m.linkname))
                if target is None:
                    raise ValueError(f"hard link {m.name!r} to {m.linkname!r}, which is not a file here")
                self.place(path, target)
                continue
            kind = _kind(m)
            if kind == "file":
                f = tar.extractfile(m)
                assert f is not None
                data = _sha256(f)
            elif kind == "symlink":
                data = m.linkname
            elif kind in ("char", "block"):
                data = f"{m.devmajor}:{m.devminor}"
            else:
                data = ""
            raw_cap = m.pax_headers.get(CAPABILITY_XATTR, "")
            capability = raw_cap.encode("utf-8", "surrogateescape").hex()
            node = _Inode(kind, m.mode & 0o7777, m.uid, m.gid, data, capability)
            if path == "" and kind != "dir":
                raise ValueError("a layer replaces the root directory with a non-directory")
            self.place(path, node)

    def place(self, path: str, node: _Inode) -> None:
        if path:
            self.ensure_parents(path)
        old = self.nodes.get(path, "absent")
        if not (node.kind == "dir" and (old is None or (isinstance(old, _Inode) and old.kind == "dir"))):
            self.remove(path)  # a non-directory (or a directory over a non-directory) replaces the subtree
        self.nodes[path] = node

    def entries(self) -> dict[str, Entry]:
        groups: dict[int, list[str]] = {}
        for path, node in self.nodes.items():
            if node is not None and node.kind != "dir":
                groups.setdefault(id(node), []).append(path)
        out: dict[str, Entry] = {}
        for path, node in self.nodes.items():
            if node is None:
                out[path] = ("dir", -1, -1, -1, "implicit", (), "")
                continue
            group = groups.get(id(node), [])
            links = tuple(sorted(group)) if len(group) > 1 else ()
            out[path] = (node.kind, node.mode, node.uid, node.gid, node.data, links, node.capability)
        return out


def _sha256(f: IO[bytes]) -> str:
    h = hashlib.sha256()
    while chunk := f.read(1 << 20):
        h.update(chunk)
    return h.hexdigest()


def apply_layers(layers: Iterable[IO[bytes]]) -> dict[str, Entry]:
    """Layer tar streams (plain or compressed), lowest first -> the image's tree."""
    tree = _Tree()
    for stream in layers:
        with tarfile.open(fileobj=stream, mode="r:*") as tar:
            tree.apply(tar)
    return tree.entries()


def tree_from_archive(archive: Path) -> dict[str, Entry]:
    """A docker-archive's single image (manifest.json's Layers, in order) as a tree."""
    with tarfile.open(archive, "r:*") as outer:
        manifest_file = outer.extractfile("manifest.json")
        assert manifest_file is not None, f"{archive} has no manifest.json"
        manifest = json.load(manifest_file)
        assert isinstance(manifest, list) and len(manifest) == 1, f"{archive}: expected one image: {manifest}"
        streams = []
        for name in manifest[0]["Layers"]:
            f = outer.extractfile(name)
            assert f is not None, f"{archive}: layer {name} is missing"
            streams.append(f)
        return apply_layers(streams)


def archive_config(archive: Path) -> dict[str, object]:
    """The image config (the JSON that manifest.json's Config names) of a docker-archive."""
    with tarfile.open(archive, "r:*") as outer:
        manifest_file = outer.extractfile("manifest.json")
        assert manifest_file is not None
        config_name = json.load(manifest_file)[0]["Config"]
        f = outer.extractfile(config_name)
        assert f is not None
        return dict(json.load(f))


def comparable(tree: dict[str, Entry]) -> dict[str, Entry]:
    return {path: entry for path, entry in tree.items() if path not in EXCLUDED}


def _show(entry: Entry) -> str:
    kind, mode, uid, gid, data, links, capability = entry
    if data == "implicit":
        return "dir (implicit parent, no entry of its own)"
    shown = data[:12] if kind == "file" else data
    text = f"{kind} {mode:04o} {uid}:{gid} {shown}".rstrip()
    return text + (f" links={','.join(links)}" if links else "") + (f" cap={capability}" if capability else "")


def tree_diff(a: dict[str, Entry], b: dict[str, Entry], a_name: str = "podman",
              b_name: str = "pycontain") -> list[str]:
    """One line per differing path: '/path: podman <entry> | pycontain <entry>'."""
    lines = []
    for path in sorted(set(a) | set(b)):
        ea, eb = a.get(path), b.get(path)
        if ea == eb:
            continue
        left = _show(ea) if ea is not None else "absent"
        right = _show(eb) if eb is not None else "absent"
        lines.append(f"/{path}: {a_name} {left} | {b_name} {right}")
    return lines
