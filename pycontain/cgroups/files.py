"""Reading and writing cgroupfs control files: the few primitives every backend shares."""

from __future__ import annotations

import os


def write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def read_int(path: str) -> int:
    text = read(path).strip()
    return int(text) if text.isdigit() else 0


def keyed(text: str) -> dict[str, int]:
    """Parse "key value" lines (memory.stat, memory.events, cpu.stat) into a dict."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def host_memory() -> int:
    for line in read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0
