"""What the container runs with: environment, working directory, entrypoint, and --explain narration."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import Pycontain

pytestmark = pytest.mark.usefixtures("no_leaks")


def env_of(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


def test_env_flag_sets_variables(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "-e", "FOO=bar", "-e", "EMPTY=", "-e", "SPACED=a b", "busybox", "env")
    env = env_of(res.stdout)
    assert env["FOO"] == "bar"
    assert env["EMPTY"] == ""
    assert env["SPACED"] == "a b"


def test_default_environment_has_path_hostname_and_home(pc: Pycontain) -> None:
    env = env_of(pc.ok("run", "--rm", "-h", "envhost", "busybox", "env").stdout)
    assert "/bin" in env["PATH"].split(":")
    assert env["HOSTNAME"] == "envhost"
    assert env["HOME"] == "/root"


def test_host_environment_does_not_leak_in(pc: Pycontain, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST_ONLY_SECRET", "s3cret")
    res = pc.ok("run", "--rm", "busybox", "env")
    assert "HOST_ONLY_SECRET" not in res.stdout
    # but `-e KEY` alone copies it from the host, as in Docker
    res = pc.ok("run", "--rm", "-e", "HOST_ONLY_SECRET", "busybox", "env")
    assert env_of(res.stdout)["HOST_ONLY_SECRET"] == "s3cret"


def test_env_file_sets_variables_and_skips_comments(pc: Pycontain, tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("# a comment\n\nA=1\nB=two words\nC=from-file\n")
    res = pc.ok("run", "--rm", "--env-file", env_file, "-e", "C=from-flag", "busybox", "env")
    env = env_of(res.stdout)
    assert env["A"] == "1"
    assert env["B"] == "two words"
    assert env["C"] == "from-flag"  # -e wins over --env-file
    assert "# a comment" not in res.stdout


def test_workdir_sets_the_current_directory(pc: Pycontain) -> None:
    assert pc.ok("run", "--rm", "-w", "/etc", "busybox", "pwd").stdout == "/etc\n"


def test_workdir_is_created_when_missing(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "-w", "/work/new/dir", "busybox", "sh", "-c", "pwd; ls -ld /work/new/dir")
    lines = res.stdout.splitlines()
    assert lines[0] == "/work/new/dir"
    assert lines[1].startswith("d")


def test_default_workdir_is_root(pc: Pycontain) -> None:
    assert pc.ok("run", "--rm", "busybox", "pwd").stdout == "/\n"


def test_image_default_command_runs_without_a_command(pc: Pycontain) -> None:
    # the image's CMD is ["sh"]; with stdin attached it reads commands from it
    res = pc.ok("run", "--rm", "-i", "busybox", input="echo from-default-cmd\n")
    assert res.stdout == "from-default-cmd\n"


def test_entrypoint_replaces_the_image_command(pc: Pycontain) -> None:
    assert pc.ok("run", "--rm", "--entrypoint", "echo", "busybox", "hello", "world").stdout == "hello world\n"
    # the image's CMD (sh) is dropped, as in Docker: `echo` runs with no arguments
    assert pc.ok("run", "--rm", "--entrypoint", "echo", "busybox").stdout == "\n"


def test_entrypoint_from_the_image_gets_the_command_as_arguments(pc: Pycontain, busybox_tarball: Path) -> None:
    pc.ok("import", "--change", 'ENTRYPOINT ["echo", "prefix"]', "--change", 'CMD ["default"]',
          busybox_tarball, "echoer")
    assert pc.ok("run", "--rm", "echoer").stdout == "prefix default\n"
    assert pc.ok("run", "--rm", "echoer", "given").stdout == "prefix given\n"


def test_explain_narrates_the_kernel_steps_on_stderr(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "--explain", "busybox", "echo", "out")
    assert res.stdout == "out\n"  # narration never mixes with the container's output
    assert "clone" in res.stderr
    assert "CLONE_NEWPID" in res.stderr
    assert "pivot_root" in res.stderr


def test_without_explain_stderr_is_quiet(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "busybox", "echo", "out")
    assert res.stderr == ""


def test_explain_of_a_detached_run_lets_go_of_the_callers_stderr(pc: Pycontain) -> None:
    """The monitor of `run -d` closes the narration's copy of stderr once the container runs: a caller
    reading stderr to its end (a pipe, `2>&1 | grep`) is not held until the container stops."""
    res = pc("--explain", "run", "-d", "--name", "narrated", "busybox", "sleep", "60", timeout=20)
    assert res.returncode == 0 and "[explain] clone" in res.stderr, res.stderr
    pc.ok("rm", "-f", "narrated")
