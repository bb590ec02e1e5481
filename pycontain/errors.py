"""The PycontainError hierarchy. Every message says what failed and, where it helps, what to do.

cli.py is the only place that turns these into an exit code and a one-line message.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn


class PycontainError(Exception):
    """pycontain itself could not do what was asked (exit 125)."""

    exit_code = 125


class UsageError(PycontainError):
    """A bad flag, argument or value."""


class NotRootError(PycontainError):
    pass


class ImageNotFound(PycontainError):
    pass


class ImageError(PycontainError):
    """An image or layer is malformed or unsafe."""


class RegistryError(ImageError):
    """A registry could not be reached, refused our credentials, or answered something unusable."""


class ImageInUse(ImageError):
    """`rmi` of an image a container still uses (without -f, or a running one)."""


class ContainerNotFound(PycontainError):
    pass


class NameInUse(PycontainError):
    pass


class ContainerStateError(PycontainError):
    """The container is not in a state that allows the operation (e.g. rm of a running one)."""


class CommandNotFound(PycontainError):
    """The container's command does not exist (exit 127)."""

    exit_code = 127


class CommandNotExecutable(PycontainError):
    """The container's command exists but cannot be executed (exit 126)."""

    exit_code = 126


def leave(code: int) -> NoReturn:
    """Flush stdout and stderr, then exit at once, without interpreter finalization.

    Tearing the interpreter down (module dicts, caches, a final collection) costs ~9 ms on the reference
    VM, more than a third of a container's start. Nothing needs it: every file pycontain writes is closed
    by a `with` or an explicit close, there are no atexit handlers, and the streams are flushed here.
    """
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
