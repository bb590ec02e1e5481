"""What the property-based fuzz tests (test_fuzz_*.py) share: one fixed settings profile and a count of the
examples each ran, which the unit conftest prints at the end of the session.

The profile is derandomized (the same examples on every run: a failure reproduces, CI is stable) and has
no example database; each test sets how many examples it runs, chosen so that the whole fuzz set stays
under ~60 s on the reference VM. The promise fuzzed everywhere: bad input ends in pycontain's own error
(PycontainError: one line, exit 125), never in any other exception.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

COUNTS: dict[str, int] = {}


def fuzz(max_examples: int) -> settings:
    return settings(derandomize=True, database=None, max_examples=max_examples, deadline=None,
                    suppress_health_check=list(HealthCheck), print_blob=False)


def count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


def one_line(e: BaseException) -> None:
    """pycontain's error contract, as the command line prints it: a message of one line."""
    text = str(e)
    assert text and "\n" not in text, repr(text)


# JSON values of every kind, nested a little: what an untrusted document may hold anywhere.
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


# The values that most often break a reader expecting another type: empty containers, null, the edges.
CONFUSIONS: list[Any] = [[], {}, None, "", 0, -1, 2**64, True, "x", [[]], {"": {}}, 1.5]


def _spots(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in a JSON document."""
    if isinstance(node, dict):
        return [(node, k) for k in node] + [s for v in node.values() for s in _spots(v)]
    if isinstance(node, list):
        return [(node, i) for i in range(len(node))] + [s for v in node for s in _spots(v)]
    return []


@st.composite
def damaged(draw: st.DrawFn, doc: Any) -> Any:
    """doc with 0-3 random changes: a value replaced by any JSON, a key deleted, a junk key added."""
    for _ in range(draw(st.integers(0, 3))):
        spots = _spots(doc)
        if not spots:
            return draw(JSON)
        parent, key = draw(st.sampled_from(spots))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            # A copy: a later change to the document must never reach the shared CONFUSIONS values.
            parent[key] = copy.deepcopy(draw(st.one_of(st.sampled_from(CONFUSIONS), JSON)))
        elif action == "delete":
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=6))] = draw(JSON)
    return doc
