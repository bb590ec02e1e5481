"""Shell completion: the generated script parses, and driven in a real bash it completes what the parser's
tables say (commands, management subcommands, flags, flag values, names), global flags included."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pycontain import cli, completion
from pycontain.errors import UsageError

# A stand-in for the `pycontain completion __names KIND` the script runs: fixed names, and a log of the
# --root it was given (so the tests need neither root nor a state directory).
FAKE_PYCONTAIN = r"""
pycontain() {
    if [ "$1" = --root ]; then printf '%s\n' "$2" >> "$ROOT_LOG"; shift 2; fi
    [ "$1 $2" = "completion __names" ] || return 1
    case $3 in
        containers) printf 'web\ndb\n' ;;
        images) printf 'alpine:3.20\nalpine:latest\nbusybox:latest\n' ;;
        volumes) printf 'data\n' ;;
        networks) printf 'pycontain\nmynet\n' ;;
    esac
}
"""


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "pycontain.bash"
    path.write_text(completion.script("bash"))
    return path


def complete(script: Path, line: str, tmp_path: Path) -> tuple[list[str], list[str]]:
    """COMPREPLY for the command line `line` (cursor at its end) and the roots passed to `__names`.
    COMP_WORDS/COMP_CWORD are split at spaces only: the function splits COMP_LINE itself (see completion.py)."""
    log = tmp_path / "roots"
    log.write_text("")
    driver = f"""
source {script}
{FAKE_PYCONTAIN}
COMP_LINE=$1
COMP_POINT=${{#COMP_LINE}}
read -ra COMP_WORDS <<< "$COMP_LINE"
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
case $COMP_LINE in *' ') COMP_WORDS+=(''); COMP_CWORD=$((COMP_CWORD + 1)) ;; esac
__pycontain_complete
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    res = subprocess.run(["bash", "--norc", "--noprofile", "-c", driver, "driver", line], capture_output=True,
                         text=True, timeout=30, env={"ROOT_LOG": str(log), "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    return [w for w in res.stdout.splitlines() if w], log.read_text().split()


def test_the_bash_script_is_valid_bash(bash_script: Path) -> None:
    res = subprocess.run(["bash", "-n", str(bash_script)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert "complete -F __pycontain_complete pycontain" in bash_script.read_text()


def test_the_zsh_script_generates_and_is_valid_zsh_if_zsh_is_here(tmp_path: Path) -> None:
    text = completion.script("zsh")
    assert text.startswith("#compdef pycontain\n") and "bashcompinit" in text
    assert "complete -F __pycontain_complete pycontain" in text
    zsh = shutil.which("zsh")
    if zsh is None:
        return  # zsh is not installed here: generation is all that can be checked
    path = tmp_path / "_pycontain"
    path.write_text(text)
    res = subprocess.run([zsh, "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr


def test_an_unknown_shell_is_one_clear_error() -> None:
    with pytest.raises(UsageError, match="bash and zsh"):
        completion.script("fish")


@pytest.mark.parametrize(("line", "expected"), [
    ("pycontain ru", ["run"]),
    ("pycontain run --ne", ["--network", "--net", "--network-alias"]),
    ("pycontain container l", ["list", "logs", "ls"]),
    ("pycontain --explain ru", ["run"]),
    ("pycontain -", ["--root", "--explain", "--help", "--version"]),
    ("pycontain image ls --no", ["--no-trunc"]),
    ("pycontain volume ls -", "FLAGS volume ls"),
    ("pycontain help vol", ["volume"]),
    ("pycontain completion ", ["bash", "zsh"]),
    ("pycontain run --pull ", ["missing", "never", "always"]),
    ("pycontain run --network=b", ["bridge"]),  # bash completes after the `=` (COMP_WORDBREAKS)
    ("pycontain run --network ", ["pycontain", "mynet", "bridge", "none", "host"]),
    ("pycontain run -it alp", ["alpine:3.20", "alpine:latest"]),
    ("pycontain run -dw /srv busy", ["busybox:latest"]),  # -w's value is not the image
    ("pycontain run -it alpine:", ["3.20", "latest"]),  # after the `:`, as bash replaces only that part
    ("pycontain run --rm alpine --n", []),  # the container's own command: pycontain's flags are not offered
    ("pycontain rm -f ", ["web", "db"]),
    ("pycontain rm web d", ["db"]),
    ("pycontain exec -it w", ["web"]),
    ("pycontain inspect ", ["web", "db", "alpine:3.20", "alpine:latest", "busybox:latest"]),
    ("pycontain rmi b", ["busybox:latest"]),
    ("pycontain volume rm ", ["data"]),
    ("pycontain volume remove ", ["data"]),
    ("pycontain container rm ", ["web", "db"]),
    ("pycontain container ls -", "FLAGS ps"),
    ("pycontain image rm ", ["alpine:3.20", "alpine:latest", "busybox:latest"]),
    ("pycontain run --volumes-from ", ["web", "db"]),
])
def test_bash_completes(bash_script: Path, tmp_path: Path, line: str, expected: list[str] | str) -> None:
    if isinstance(expected, str):  # "FLAGS CMD": that command's option table, as it is now
        expected = table_flags(expected.removeprefix("FLAGS "))
    assert complete(bash_script, line, tmp_path)[0] == expected


def table_flags(command: str) -> list[str]:
    cli.load_all_plugins()
    return [name for names, *_ in cli.COMMANDS[command][0] for name in names] + ["--help"]


def test_bash_completes_every_top_level_command_and_group(bash_script: Path, tmp_path: Path) -> None:
    replies, _ = complete(bash_script, "pycontain ", tmp_path)
    model = completion.Model()
    assert set(replies) == set(model.top)
    assert {name for name in cli.COMMANDS if " " not in name} <= set(replies)
    assert {"container", "image", "volume", "builder", "help"} <= set(replies)


def test_bash_completes_a_group_from_its_keys_and_aliases(bash_script: Path, tmp_path: Path) -> None:
    replies, _ = complete(bash_script, "pycontain volume ", tmp_path)
    subs = {key.split(" ", 1)[1] for key in [*cli.COMMANDS, *cli.ALIASES] if key.startswith("volume ")}
    assert set(replies) == subs
    assert {"create", "ls", "inspect", "rm", "prune", "list", "remove"} <= set(replies)


def test_the_global_root_is_skipped_and_passed_to_the_name_lookup(bash_script: Path, tmp_path: Path) -> None:
    replies, _ = complete(bash_script, f"pycontain --root {tmp_path} ps -", tmp_path)
    assert replies == table_flags("ps")
    replies, roots = complete(bash_script, f"pycontain --root {tmp_path} --explain rm ", tmp_path)
    assert replies == ["web", "db"] and roots == [str(tmp_path)]
    replies, roots = complete(bash_script, f"pycontain --root={tmp_path} stop ", tmp_path)
    assert replies == ["web", "db"] and roots == [str(tmp_path)]
    # A root that does not exist is not passed on: `--root` would create it.
    _, roots = complete(bash_script, f"pycontain --root {tmp_path}/missing rm ", tmp_path)
    assert roots == []


def test_files_and_directories_where_the_tables_say_so(bash_script: Path, tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "image.tar").write_text("")
    assert complete(bash_script, "pycontain --root ct", tmp_path)[0] == ["ctx"]
    assert complete(bash_script, "pycontain load -i im", tmp_path)[0] == ["image.tar"]
    assert complete(bash_script, "pycontain build c", tmp_path)[0] == ["ctx"]


def test_every_flag_of_every_command_completes(bash_script: Path, tmp_path: Path) -> None:
    """The script is made from the tables: each command's `-<TAB>` offers exactly its option table."""
    model = completion.Model()
    for command in sorted(model.commands):
        replies, _ = complete(bash_script, f"pycontain {command} -", tmp_path)
        assert replies == model.flags(command) + ["--help"], command


def test_positionals_and_values_come_from_the_metavars() -> None:
    assert completion.positional_spec("rm", "CONTAINER...") == "containers+"
    assert completion.positional_spec("run", "IMAGE [COMMAND [ARG...]]") == "images"
    assert completion.positional_spec("network", "create|ls|inspect|rm [NAME...]") == \
        "=create,=ls,=inspect,=rm networks+"
    assert completion.positional_spec("inspect", "CONTAINER|IMAGE...") == "containers,images+"
    assert completion.positional_spec("volume", "COMMAND") == ""
    assert completion.flag_value_spec(("--network", "--net"), "MODE", "run") == "networks,=bridge,=none,=host"
    assert completion.flag_value_spec(("--alias",), "NAME", "network") == ""
