"""`rmi` and `image prune`: untag, forget images, and collect the layers nothing uses any more.

Docker's rules: removing a tag of an image that has other tags only untags it; removing the last tag
(or the image by id) deletes the image. An image a container was created from is kept unless `-f`
(and never while that container runs: its layers are its root filesystem). Layers are shared between
images, so they are deleted by a mark-and-sweep over every remaining image and container record, under
the store's `gc` lock held exclusively (pulls hold it shared while they add layers not yet tagged).
"""

from __future__ import annotations

import os

from pycontain.errors import ImageInUse, ImageNotFound, UsageError
from pycontain.images import reference
from pycontain.images.store import Store
from pycontain.state import Paths


def _find(store: Store, name: str) -> tuple[str, list[str], bool]:
    """(image id, the refs to remove, named by id?) for a reference or an id (prefix)."""
    refs = store.refs()
    try:
        ref = str(reference.parse(name))
    except UsageError:
        ref = None
    if ref is not None and ref in refs:
        return refs[ref], [ref], False
    hexpart = name.removeprefix("sha256:")
    if len(hexpart) >= 4 and set(hexpart) <= set("0123456789abcdef"):
        found = {i for i in store.image_ids() if i[7:].startswith(hexpart)}
        if len(found) > 1:
            raise UsageError(f"image id prefix {name!r} is ambiguous; give more characters")
        if found:
            image_id = found.pop()
            return image_id, sorted(r for r, i in refs.items() if i == image_id), True
    raise ImageNotFound(f"no such image: {name} (`pycontain images` lists them)")


def rmi(paths: Paths, names: list[str], force: bool) -> list[str]:
    store = Store(paths)
    out: list[str] = []
    gc_fd = store.lock("gc")
    try:
        users = store.containers_using(paths)
        for name in names:
            image_id, refs, by_id = _find(store, name)
            all_refs = sorted(r for r, i in store.refs().items() if i == image_id)
            if by_id and len([r for r in all_refs if reference.parse(r).tag]) > 1 and not force:
                raise ImageInUse(f"image {image_id[7:19]} has several tags ({', '.join(_familiar(all_refs))}); "
                                 "remove them one by one, or use -f to remove them all")
            to_untag = all_refs if by_id else refs
            remaining = [r for r in all_refs if r not in to_untag]
            # A digest reference (repo@sha256:...) alone does not keep an image that has lost its last tag.
            last = not any(reference.parse(r).tag for r in remaining)
            if last:
                _check_users(image_id, users.get(image_id, []), force)
                to_untag = all_refs
            store.retag({}, remove=tuple(to_untag))
            out += [f"Untagged: {f}" for f in _familiar(to_untag)]
            _events(paths, image_id, _familiar(to_untag), last)
            if last:
                store.delete_image(image_id)
                out.append(f"Deleted: {image_id}")
        for layer in store.collect_garbage(paths):
            out.append(f"Deleted: {layer}")
    finally:
        os.close(gc_fd)
    return out


def _events(paths: Paths, image_id: str, names: list[str], deleted: bool) -> None:
    """`events`: an untag per name, then a delete if the image went."""
    from pycontain import events

    for name in names:
        events.emit(paths, "image", "untag", image_id, {"name": name})
    if deleted:
        events.emit(paths, "image", "delete", image_id, {"name": image_id})


def _familiar(refs: list[str]) -> list[str]:
    return [reference.parse(r).familiar for r in refs]


def _check_users(image_id: str, users: list[tuple[str, bool, list[str]]], force: bool) -> None:
    running = [name for name, is_running, _ in users if is_running]
    if running:
        raise ImageInUse(f"image {image_id[7:19]} is used by running container {running[0]}; "
                         "stop and remove the container first")
    if users and not force:
        raise ImageInUse(f"image {image_id[7:19]} is used by container {users[0][0]}; remove the container "
                         f"(`pycontain rm {users[0][0]}`) or use rmi -f")


def prune(paths: Paths, everything: bool) -> list[str]:
    """Remove untagged images (with everything: every image no container uses), then unused layers."""
    store = Store(paths)
    out: list[str] = []
    gc_fd = store.lock("gc")
    try:
        store.gc_temp()
        users = store.containers_using(paths)
        refs = store.refs()
        tagged = set(refs.values())
        for image_id in sorted(store.image_ids()):
            if image_id in users or (image_id in tagged and not everything):
                continue
            mine = sorted(r for r, i in refs.items() if i == image_id)
            store.retag({}, remove=tuple(mine))
            out += [f"Untagged: {f}" for f in _familiar(mine)]
            _events(paths, image_id, _familiar(mine), True)
            store.delete_image(image_id)
            out.append(f"Deleted: {image_id}")
        out += [f"Deleted: {layer}" for layer in store.collect_garbage(paths)]
    finally:
        os.close(gc_fd)
    return out
