"""JSON for the start path without importing the json package.

`import json` costs ~7 ms on the reference VM (it pulls in `re` and `enum`), a third of the whole
`run --rm IMG /bin/true` budget. The json package's speed comes from its C accelerator `_json`, which
has no such imports; this module drives that accelerator directly. The output is ordinary JSON
(compact, keys sorted), readable by any JSON tool. Falls back to the json package if `_json` is absent.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_json: Any
try:
    import _json
except ImportError:  # pragma: no cover - every CPython ships it
    _json = None


class _DecodeContext:
    """The attributes `_json.make_scanner` reads from a json.JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return float(name.replace("Infinity", "inf"))


def _default(obj: Any) -> Any:
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


if _json is not None:
    _scan = _json.make_scanner(_DecodeContext())
    _encode = _json.make_encoder(
        None, _default, _json.encode_basestring_ascii, None, ": ", ", ", True, False, True
    )
_WS = " \t\n\r"


def loads(text: str | bytes) -> Any:
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if _json is None:
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(_WS))
    try:
        obj, end = _scan(text, start)
        if not text[end:].strip(_WS):
            return obj
    except Exception:  # the accelerator reports errors through json.decoder: let it say what is wrong
        pass
    import json

    return json.loads(text)


def dumps(obj: Any) -> str:
    if _json is None:
        import json

        return json.dumps(obj, sort_keys=True, default=_default)
    return "".join(_encode(obj, 0))
