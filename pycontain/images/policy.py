"""The pull policy of `run` and `create` (--pull, PYCONTAIN_PULL): the one place that decides it.

    missing   use the stored image; pull it only if it is not there (Docker's default)
    never     use the stored image or fail
    always    pull first (an up-to-date image downloads only its manifest)

It sits above both store.py and pull.py (pull.py builds on the store), so neither has to import
the other to decide; the pull code (http.client, ssl, hashlib ...) is imported only when a pull
really happens, so `run` of a stored image pays nothing for it.
"""

from __future__ import annotations

from pycontain.errors import ImageNotFound, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pycontain.images.store import Image, Store


def image_for(store: Store, ref: str, policy: str) -> Image:
    """The image `ref` names under `policy` (one of config.PULL_POLICIES), pulled first if the policy says so."""
    if policy == "never":
        return store.resolve(ref)
    if policy == "missing":
        try:
            return store.resolve(ref)
        except ImageNotFound:
            pass
    elif policy != "always":
        raise UsageError(f"invalid --pull {policy!r}: use missing, never or always")
    from pycontain.images.pull import pull_for_run

    return pull_for_run(store, ref)
