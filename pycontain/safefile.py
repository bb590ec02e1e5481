"""Writing a file by name without following a symlink someone else planted there.

pycontain runs as root and writes files at paths users choose: `save -o ~alice/out.tar`, `save -o
/tmp/out.tar`, and later `--cidfile` and `--iidfile`. A plain open(path, "w") follows whatever is at that
name, and so does open() of a predictable temp name beside it (`out.tar.tmp-<pid>`): a user who can
write to the directory plants a symlink there and root truncates and rewrites the file it points at,
/etc/shadow included (CWE-59, CWE-377). The kernel's fs.protected_symlinks stops this only in sticky
world-writable directories and only where the sysctl is on; a user's own home directory is neither.

So nothing here ever opens an existing name for writing:

  1. the content goes to a new temp file in the target's own directory, created with
     O_CREAT|O_EXCL|O_NOFOLLOW under a random name: if anything already has that name, a symlink or a
     file, the kernel refuses (EEXIST) and we pick another name;
  2. it is fsync'd (durable=True), so after a crash the target holds the old content or the new, never
     an empty or half-written file;
  3. it is rename(2)d over the target. rename replaces the directory entry: if the target is a symlink
     or a hard link, the link is replaced and the file it led to is left alone, which is the point;
  4. on any failure the temp file is deleted and the target is untouched.

Plain `os` only: state.py writes container records through this on `run`'s start path.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import BinaryIO

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_ATTEMPTS = 8


def create_new(path: str, mode: int = 0o600) -> int:
    """Create `path`, which must not exist in any form (not even a dangling symlink); a write-only fd.

    For temp files whose names the caller chose (store blobs): EEXIST instead of writing through a link.
    """
    return os.open(path, _CREATE, mode)


def _create_temp(path: str, mode: int) -> tuple[int, str]:
    head, tail = os.path.split(path)
    prefix = f"{head or '.'}/.{tail}.tmp-{os.getpid()}-"
    for attempt in range(_ATTEMPTS):
        # Random, so the name cannot be predicted; O_EXCL|O_NOFOLLOW, so a name planted anyway is refused.
        tmp = prefix + os.urandom(6).hex()
        try:
            return os.open(tmp, _CREATE, mode), tmp
        except FileExistsError:
            if attempt == _ATTEMPTS - 1:
                raise FileExistsError(17, "cannot create a temp file beside it (every name tried exists)",
                                      path) from None
        except OSError as e:
            # Name the file the user asked for, not our temp name: "No such file or directory: /x/out.tar".
            raise OSError(e.errno, e.strerror, path) from None
    raise AssertionError("unreachable")


def _replace(tmp: str, path: str) -> None:
    try:
        os.rename(tmp, path)
    except OSError as e:
        raise OSError(e.errno, e.strerror, path) from None


def _unlink_quietly(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def replace_file(path: str, data: bytes, mode: int = 0o600, durable: bool = True) -> None:
    """Make `path` hold `data`, atomically, never writing through a symlink (see the module docstring).

    mode is filtered by the umask as open(2) does; 0o600 keeps records and credentials root-only.
    durable=False skips the fsync, for files on tmpfs (/run) where it buys nothing.
    """
    fd, tmp = _create_temp(path, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        except OSError as e:
            # os.write names no file: a full disk would say only "No space left on device". Name the
            # file being replaced (which still holds its old content), as the other errors here do.
            raise OSError(e.errno, e.strerror, path) from None
        finally:
            os.close(fd)
        _replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


class write_atomically:  # lower case: it reads as a function, `with write_atomically(path) as f:`
    """`with write_atomically(path, mode=0o666) as f: f.write(...)`: a binary file that becomes `path`
    (fsync'd, renamed over it) when the block ends normally, and vanishes if it raises.

    For outputs that are streamed rather than held in memory (`save -o`), and for --cidfile/--iidfile.
    """

    def __init__(self, path: str, mode: int = 0o600, durable: bool = True) -> None:
        self.path, self.mode, self.durable = path, mode, durable
        self._tmp = ""
        self._file: BinaryIO | None = None

    def __enter__(self) -> BinaryIO:
        fd, self._tmp = _create_temp(self.path, self.mode)
        self._file = os.fdopen(fd, "wb")
        return self._file

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        f, self._file = self._file, None
        assert f is not None
        try:
            try:
                if exc_type is None:
                    f.flush()
                    if self.durable:
                        os.fsync(f.fileno())
            finally:
                f.close()
            if exc_type is None:
                _replace(self._tmp, self.path)
                return
        except BaseException:
            _unlink_quietly(self._tmp)
            raise
        _unlink_quietly(self._tmp)
