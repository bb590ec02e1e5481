"""Fuzzing the command line: random argv for every command, through the parser and the checks that turn
options into a container's config, and through _main with every handler stubbed out (nothing runs, no
state root is made). Only pycontain's own errors may come out: one line, exit 125 (126/127 never here).
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any
from unittest import mock

from fuzz_support import count, fuzz, one_line
from hypothesis import given
from hypothesis import strategies as st

from pycontain import cli, explain, state
from pycontain.errors import PycontainError

cli.load_all_plugins()
COMMAND_NAMES = sorted(cli.COMMANDS)
FLAGS = sorted({name for spec, _, _ in cli.COMMANDS.values() for names, *_ in spec for name in names})
# Values shaped like what the flags take, and like what they must refuse.
VALUES = ["", "-", "--", "=", "0", "-1", "1", "1.5", "1e400", "nan", "512m", "1g", "99999999999999999999t",
          "0-1,3", "3-1", "abc", "K=V", "K", "=V", "/tmp", "/nonexistent/x", "rel/path", "/a:/b", "/a:/b:ro",
          "/a:/b:rx", "8080:80", "127.0.0.1::80/udp", "[::1]:80:80", "80/sctp", "99999:80", "max-size=1k",
          "max-file=0", "seccomp=unconfined", "seccomp=/nonexistent.json", "no-new-privileges",
          "no-new-privileges=maybe", "ALL", "SYS_ADMIN", "CAP_NET_RAW", "bogus", "nofile=10:5", "nofile=x",
          "net.ipv4.ip_forward=1", "kernel.shmmax=1", "auto", "host", "none", "bridge", "missing", "never",
          "always", "busybox", "BadImage", "a" * 300, "\x00", "é", "KILL", "SIGTERM", "65"]
WORD = st.one_of(st.sampled_from(FLAGS), st.sampled_from(VALUES),
                 st.builds(lambda f, v: f"{f}={v}", st.sampled_from(FLAGS), st.sampled_from(VALUES)),
                 st.text(max_size=8))
ARGV = st.lists(WORD, max_size=8)


def _checked(command: str, args: list[str]) -> None:
    opts, pos = cli.parse_options(cli.COMMANDS[command][0], args, command)
    if command in ("run", "create"):
        opts.setdefault("detach", False)
        opts.setdefault("rm", False)
        cli.config_from(opts, pos)


@fuzz(1500)
@given(st.sampled_from(COMMAND_NAMES), ARGV)
def test_parse_options_and_config(command: str, args: list[str]) -> None:
    count("cli: parse_options + run/create config checks")
    try:
        _checked(command, args)
    except PycontainError as e:
        one_line(e)
        assert e.exit_code == 125


def _stub(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    return 0


@fuzz(1500)
@given(st.lists(st.one_of(st.sampled_from(["--root", "--root=", "--explain", "--version", "-v", "--help", "-h",
                                           "help", *COMMAND_NAMES]), WORD), max_size=10))
def test_main_with_every_handler_stubbed(argv: list[str]) -> None:
    """The whole of _main: global flags, command lookup, --help, parsing; the handler itself is a stub
    (for run/create it still builds the config, which is where the checks are)."""
    count("cli: _main with stubbed handlers")
    handlers = {name: _stub for name in cli.HANDLERS}
    for name in ("run", "create"):
        handlers[name] = lambda paths, opts, pos: (cli.config_from(opts, pos), 0)[1]
    fake_paths = classmethod(lambda cls, root: cls("/nonexistent-fuzz/run", "/nonexistent-fuzz/storage"))
    out = io.StringIO()
    try:
        with mock.patch.dict(cli.HANDLERS, handlers), mock.patch.object(state.Paths, "from_root", fake_paths), \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = cli._main(list(argv))
        assert isinstance(code, int)
    except PycontainError as e:
        one_line(e)
    finally:
        # --explain switched the narration on for this process, on a dup of stderr.
        if explain._fd > 2:
            os.close(explain._fd)
        explain.enabled, explain._fd = False, 2
