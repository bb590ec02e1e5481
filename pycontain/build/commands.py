"""`pycontain build` (also `image build`) and `builder prune`: cli.py loads this module only for them."""

from __future__ import annotations

import os
import sys

from pycontain.cli import FLAG, MULTI, VALUE, need
from pycontain.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

BUILD_OPTIONS = [
    (("-t", "--tag"), "tag", MULTI, "NAME[:TAG]", "name the image (several -t: several names)"),
    (("-f", "--file"), "file", VALUE, "FILE", "the Dockerfile (default CONTEXT/Dockerfile; - reads stdin)"),
    (("--build-arg",), "build_arg", MULTI, "K[=V]", "set a build argument (K alone takes the host's $K)"),
    (("--target",), "target", VALUE, "STAGE", "build this stage (and what it needs), not the last"),
    (("--no-cache",), "no_cache", FLAG, "", "make every step again"),
    (("--pull",), "pull", FLAG, "", "pull the base images even if they are stored"),
    (("--network",), "network", VALUE, "MODE", "the RUN steps' network: bridge (default), none or host"),
    (("--label",), "label", MULTI, "K=V", "a label on the image"),
    (("-q", "--quiet"), "quiet", FLAG, "", "print only the image id"),
    (("--progress",), "progress", VALUE, "MODE", "auto, plain or tty (all print a line per step)"),
    (("--iidfile",), "iidfile", VALUE, "FILE", "write the image id to FILE"),
]
COMMANDS: dict[str, tuple[list[Any], str, str]] = {
    "build": (BUILD_OPTIONS, "CONTEXT|-", "build an image from a Dockerfile"),
    "builder": ([], "prune", "manage the build cache (prune)"),
    "builder prune": ([(("-a", "--all"), "all", FLAG, "", "all of the cache, not only what no image uses"),
                       (("-f", "--force"), "force", FLAG, "", "do not ask (pycontain never asks)")], "",
                      "remove build cache no image uses"),
}


def cmd_build(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import config as c
    from pycontain.build import builder
    from pycontain.build.context import Context
    from pycontain.images import reference

    need(pos, "one build context: a directory, or - for a tar on stdin", exactly=1)
    tags = [reference.parse(t) for t in opts["tag"]]
    build_args = {}
    for item in opts["build_arg"]:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid --build-arg {item!r}: expected KEY=VALUE")
        if eq:
            build_args[key] = value
        elif key in os.environ:
            build_args[key] = os.environ[key]
    labels = {}
    for item in opts["label"]:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid --label {item!r}: expected KEY=VALUE")
        labels[key] = value
    if opts["progress"] not in (None, "auto", "plain", "tty", "quiet"):
        raise UsageError(f"invalid --progress {opts['progress']!r}: use auto, plain or tty")
    network = opts["network"] or os.environ.get("PYCONTAIN_NETWORK") or "bridge"
    if network == "default":
        network = "bridge"
    if network not in ("none", "host", "bridge"):
        raise UsageError(f"invalid --network {network!r} for build: use bridge, none or host")
    network = c.validate_network(network)
    options = builder.Options(
        tags=tags, build_args=build_args, target=opts["target"], no_cache=opts["no_cache"],
        pull="always" if opts["pull"] else c.validate_pull(None), network=network, labels=labels,
        quiet=opts["quiet"] or opts["progress"] == "quiet", iidfile=opts["iidfile"])
    dockerfile = opts["file"]
    if pos[0] == "-" and dockerfile == "-":
        raise UsageError("the context and the Dockerfile cannot both come from stdin")
    # The builder's working dir (flock'ed, what `gc` removes after a kill) holds a context from stdin too.
    with builder.Builder(paths, options) as b:
        if pos[0] == "-":
            ctx = Context.from_tar(sys.stdin.buffer, dockerfile, b.workdir)
        else:
            ctx = Context.from_dir(pos[0], dockerfile)
        with ctx:
            image_id = b.build(ctx)
    if options.iidfile:
        with open(options.iidfile, "w") as f:
            f.write(image_id)
    if options.quiet:
        print(image_id)
    else:
        b.progress.line(f"Successfully built {image_id[7:19]}")
        for tag in tags:
            b.progress.line(f"Successfully tagged {tag.familiar}")
    return 0


def cmd_builder(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    raise UsageError("usage: pycontain builder prune [-a]")


def cmd_builder_prune(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain.build import builder

    if pos:
        raise UsageError("builder prune takes no arguments")
    for line in builder.prune(paths, opts["all"]):
        print(line)
    return 0


HANDLERS = {"build": cmd_build, "builder": cmd_builder, "builder prune": cmd_builder_prune}
