"""OCI hooks: programs the spec names, run at fixed points of a container's life with its state JSON
on their stdin (prestart/createRuntime/poststart/poststop in the runtime's namespaces,
createContainer/startContainer inside the container's).

A failing prestart, createRuntime, createContainer or startContainer hook fails the start; a failing
poststart or poststop hook is only reported, as the runtime spec says.
"""

from __future__ import annotations

import json
import os
import subprocess

from pycontain.errors import PycontainError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def run_all(entries: list[dict[str, Any]], state: dict[str, Any], kind: str, fatal: bool = True) -> list[str]:
    """Run each hook in order; returns the failures of non-fatal ones."""
    failures = []
    data = json.dumps(state).encode()
    for hook in entries:
        path = hook["path"]
        argv = hook.get("args") or [path]
        try:
            res = subprocess.run(argv, executable=path, input=data, env=_env(hook.get("env")),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=hook.get("timeout"),
                                 close_fds=True)
            problem = f"exit status {res.returncode}" if res.returncode else None
            detail = res.stderr.decode(errors="replace").strip().splitlines()[-1:] if res.returncode else []
        except subprocess.TimeoutExpired:
            problem, detail = f"timed out after {hook.get('timeout')}s", []
        except OSError as e:
            problem, detail = e.strerror or str(e), []
        if problem:
            message = f"{kind} hook {path} failed: {problem}" + (f": {detail[0]}" if detail else "")
            if fatal:
                raise PycontainError(message)
            failures.append(message)
    return failures


def _env(items: list[str] | None) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items or () if "=" in item)


def host_pid() -> int:
    """This process's pid as the host sees it: /proc/self of the host's procfs, still mounted at /proc
    in a new mount namespace until pivot_root (the container's pid namespace would say 1)."""
    return int(os.readlink("/proc/self"))
