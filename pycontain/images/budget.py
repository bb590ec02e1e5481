"""How much one image may put on disk: a cap on what its layers unpack to, and a free-space reserve.

unpack.py caps each layer (8 GiB, a million entries), but that is per layer: a 272-byte gzip unpacks to
1 GiB, so an image of many small layers, each under the cap, can still write hundreds of GiB. And
nothing kept a layer from filling the filesystem under /var/lib/pycontain, usually the host's own:
logs, the journal and every other service then fail with ENOSPC. So each pull, import or load of one
image carries a Budget:

  - every uncompressed byte of its layers' tar streams (file data, headers, and anything after the
    end-of-archive marker: all of it is hashed, most of it written) is charged against a per-image
    cap, PYCONTAIN_MAX_IMAGE_BYTES (default 16 GiB);
  - before a layer is unpacked, its filesystem must have the layer's known size free (the blob's size
    from the manifest, the file's for import, the archive member's for load; the uncompressed size is
    rarely known in advance) plus a reserve: min(1 GiB, 5% of the filesystem), or
    PYCONTAIN_MIN_FREE_BYTES;
  - while it unpacks, statvfs(2) is asked again whenever the bytes written since the last look (the
    compressed blob and the unpacked files both count) reach a quarter of what was left above the
    reserve, or 16 MiB, whichever is less; the layer is refused before it eats into the reserve.
    A quarter, not all of it: files take whole blocks, so the disk fills faster than bytes stream in.

A refusal is an OverBudget error (one line, exit 125). add_layer deletes the refused layer's temp
files, and the command then removes the layers this image had already added that nothing uses
(Store.discard_unused), so a refused image leaves the store as it was.
"""

from __future__ import annotations

import os
import threading

from pycontain.errors import ImageError, UsageError

DEFAULT_MAX_IMAGE_BYTES = 16 << 30
RESERVE_CAP = 1 << 30  # keep min(1 GiB, 5% of the filesystem) free
RESERVE_PERCENT = 5
CHECK_EVERY = 16 << 20


class OverBudget(ImageError):
    """An image is bigger than the per-image cap, or would leave its filesystem short of the reserve."""


def _env_bytes(name: str) -> int | None:
    text = os.environ.get(name)
    if not text:
        return None
    if not text.isdigit():
        raise UsageError(f"{name}={text!r}: expected a number of bytes")
    return int(text)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


class Budget:
    """What one image (one pull, import, or image of a load) may still write. Thread-safe: a pull
    unpacks several layers at once, all charging the same budget."""

    def __init__(self, where: str, what: str) -> None:
        self.where = where  # a directory on the store's filesystem (the store root)
        self.what = what  # "image alpine:3.20", for messages
        self.max_bytes = _env_bytes("PYCONTAIN_MAX_IMAGE_BYTES") or DEFAULT_MAX_IMAGE_BYTES
        self.unpacked = 0
        self.added_layers: list[str] = []  # diff ids this image added to the store, for discard_unused
        self.added_blobs: list[str] = []
        self._reserve = _env_bytes("PYCONTAIN_MIN_FREE_BYTES")
        self._since_look = 0
        self._next_look = 0  # look at the first byte
        self._lock = threading.Lock()

    # -- the filesystem --
    def _free(self) -> int:
        st = os.statvfs(self.where)
        if self._reserve is None:
            self._reserve = min(RESERVE_CAP, st.f_blocks * st.f_frsize * RESERVE_PERCENT // 100)
        # f_bavail, not f_bfree: the blocks ext4 keeps for root are the host's last resort, not ours.
        return st.f_bavail * st.f_frsize

    def _refuse_space(self, free: int, need: int, what: str) -> OverBudget:
        assert self._reserve is not None
        return OverBudget(f"no space for {what}: the filesystem of {self.where} has {_mib(free)} free, and "
                          f"{_mib(need)} more would leave less than the {_mib(self._reserve)} kept free "
                          "(PYCONTAIN_MIN_FREE_BYTES); free some space (`pycontain image prune`) and try again")

    def _look(self, pending: int, what: str) -> None:
        free = self._free()
        assert self._reserve is not None
        if free - pending < self._reserve:
            raise self._refuse_space(free, pending, what)
        self._since_look = 0
        self._next_look = max(1, min(CHECK_EVERY, (free - pending - self._reserve) // 4))

    def before_layer(self, known_bytes: int, what: str) -> None:
        """Refuse a layer up front if even its known size (a lower bound) does not fit above the reserve."""
        with self._lock:
            self._look(known_bytes, what)

    # -- charging --
    def stored(self, n: int) -> None:
        """n bytes about to be (or just) written: the compressed blob copy."""
        with self._lock:
            self._spend(n)

    def unpacked_bytes(self, n: int) -> None:
        """n bytes of a layer's uncompressed tar stream: charged to the cap, and to the disk."""
        with self._lock:
            self.unpacked += n
            if self.unpacked > self.max_bytes:
                raise OverBudget(f"{self.what} unpacks to more than {_mib(self.max_bytes)} "
                                 "(PYCONTAIN_MAX_IMAGE_BYTES); refusing it as a decompression bomb")
            self._spend(n)

    def _spend(self, n: int) -> None:
        self._since_look += n
        if self._since_look >= self._next_look:
            self._look(n, self.what)
