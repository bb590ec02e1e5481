"""`pycontain build`: Dockerfiles into images, through the same executor and layer store as `run`.

    dockerfile.py   the parsed instructions (the `dockerfile` package: the reference parser itself)
    words.py        word expansion and splitting ($VAR, ${VAR:-x} ...), as the reference front end does it
    context.py      the build context: .dockerignore, confinement, source globs, checksums, COPY/ADD
    builder.py      the steps, the cache, the progress lines
    commands.py     the `build` and `builder` commands
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Value:
    """Equality, hashing and repr from a class's value fields (`_fields`, default: its __slots__): the
    small records of this package are plain classes because importing dataclasses costs ~10 ms (it loads
    inspect and ast), a third of a fully cached rebuild. A record holding lists or dicts sets __hash__ to
    None, as a mutable dataclass would."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in (self._fields or self.__slots__))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented  # as a dataclass: the other side may know better
        return bool(self._key() == other._key())

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in (self._fields or self.__slots__))
        return f"{type(self).__name__}({fields})"
