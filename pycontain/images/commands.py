"""Image commands: import, images (and, as the image issue lands, pull, push, save, load, rmi, tag, ...).

cli.py loads this module only when one of these commands runs (see cli.PLUGINS), so `pycontain run`
never imports it. COMMANDS has the same shape as cli.COMMANDS; HANDLERS maps a name to its function.
"""

from __future__ import annotations

from pycontain.cli import FLAG, MULTI, _ago, _need, _table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

COMMANDS: dict[str, tuple[list[Any], str, str]] = {
    "import": ([(("-c", "--change"), "change", MULTI, "INSTR", "set CMD, ENTRYPOINT, ENV, WORKDIR or USER")],
               "TARBALL NAME[:TAG]", "make a one-layer image from a root filesystem tarball"),
    "images": ([(("-q", "--quiet"), "quiet", FLAG, "", "only ids")], "", "list images"),
}


def cmd_import(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain.images.store import Store

    _need(pos, "TARBALL NAME[:TAG]", exactly=2)
    print(Store(paths).import_tarball(pos[0], pos[1], opts["change"]))
    return 0


def cmd_images(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain.images.store import Store

    rows = []
    for repo, tag, config, size in Store(paths).images():
        image_id = config["id"].split(":", 1)[1][:12]
        if opts["quiet"]:
            print(image_id)
            continue
        rows.append([repo, tag, image_id, _ago(config.get("created", "")) + " ago", _size(size)])
    if not opts["quiet"]:
        _table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows)
    return 0


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{n}B"
        n /= 1000  # type: ignore[assignment]
    return f"{n}"


HANDLERS = {"import": cmd_import, "images": cmd_images}
