"""Container verbs beyond run/start/stop/rm: `restart`, `pause`, `unpause`, `rename`, `container prune`.

A plugin of cli.py (COMMANDS and HANDLERS as there): loaded only when one of these commands runs, so the
`run` path never pays for it. The work itself is in runtime.py, beside the verbs it builds on.
"""

from __future__ import annotations


from pycontain.cli import FLAG, VALUE, each_ref, seconds_arg, need
from pycontain.config import parse_signal
from pycontain.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pycontain.state import Paths

COMMANDS: dict[str, tuple[list[Any], str, str]] = {
    "restart": ([(("-t", "--time"), "time", VALUE, "SECONDS",
                  "seconds to wait for it to stop before SIGKILL (default: its --stop-timeout, else 10)"),
                 (("-s", "--signal"), "signal", VALUE, "SIGNAL",
                  "signal that stops it (default: its --stop-signal, else TERM)")],
                "CONTAINER...", "stop and start containers again"),
    "pause": ([], "CONTAINER...", "freeze every process of containers (cgroup freezer)"),
    "unpause": ([], "CONTAINER...", "thaw paused containers"),
    "rename": ([], "CONTAINER NEW_NAME", "rename a container"),
    "container prune": ([(("-f", "--force"), "force", FLAG, "", "do not ask for confirmation"),
                         (("--filter",), "filter", VALUE, "FILTER", "not supported: refused")],
                        "", "remove all stopped containers"),
}


def cmd_restart(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import runtime

    need(pos, "a container")
    timeout = None if opts["time"] is None else seconds_arg(opts["time"], "--time", 10.0)
    signum = parse_signal(opts["signal"]) if opts["signal"] else None
    def restart(ref: str) -> None:
        from pycontain import events

        rec = runtime.restart(paths, ref, timeout, signum)
        if rec:
            events.container(rec, "restart")
            print(ref)

    return each_ref(pos, restart)


def cmd_pause(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import runtime

    need(pos, "a container")
    return each_ref(pos, lambda ref: print(ref) if runtime.pause(paths, ref) else None)


def cmd_unpause(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import runtime

    need(pos, "a container")
    return each_ref(pos, lambda ref: print(ref) if runtime.unpause(paths, ref) else None)


def cmd_rename(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import runtime

    need(pos, "a container and its new name", exactly=2)
    runtime.rename(paths, pos[0], pos[1])
    return 0


def cmd_container_prune(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import runtime
    from pycontain.clifmt import confirm, size

    if pos:
        raise UsageError("`pycontain container prune` takes no arguments")
    if opts["filter"] is not None:
        raise UsageError("container prune --filter is not supported")
    if not opts["force"] and not confirm("WARNING! This will remove all stopped containers.",
                                         "container prune removes all stopped containers"):
        return 0
    removed = runtime.prune(paths)
    if removed:
        print("Deleted Containers:")
        for cid, _ in removed:
            print(cid)
        print()
    print(f"Total reclaimed space: {size(sum(n for _, n in removed))}")
    return 0


HANDLERS = {"restart": cmd_restart, "pause": cmd_pause, "unpause": cmd_unpause, "rename": cmd_rename,
            "container prune": cmd_container_prune}
