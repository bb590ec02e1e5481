"""`pycontain completion bash|zsh`: a shell completion script made from the parser's own tables.

The script is generated at run time from cli.COMMANDS (every plugin loaded), cli.ALIASES and
cli.STOP_AT_POSITIONAL, so a command or flag added anywhere completes without touching this file. What
each positional argument or flag value is (a container, an image, a file...) is read from its metavar
(`CONTAINER...`, `IMAGE`, `FILE`); the few flags whose values are fixed words and whose metavar cannot
say so (`--pull POLICY`) are listed in VALUE_WORDS below.

One completion function serves both shells: zsh runs it through bashcompinit (see ZSH_HEADER for why).
It is written in the subset both shells share: `case` tables instead of associative arrays (whose
literal syntax differs between them) and 0-based arrays (zsh gets `emulate -L ksh` for that).

Names of containers, images, volumes and networks come from the hidden `pycontain completion __names
KIND`, which lists directory entries and reads no container record, so a TAB stays quick.
"""

from __future__ import annotations

import os
import re
import sys

from pycontain.errors import PycontainError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

INSTALL = """Install (bash), either of:
  pycontain completion bash > /etc/bash_completion.d/pycontain     (every user, new shells)
  source <(pycontain completion bash)                              (in ~/.bashrc: this user)
Install (zsh), either of:
  pycontain completion zsh > "${fpath[1]}/_pycontain"              (a directory on $fpath; then
                                                                     rm -f ~/.zcompdump; compinit)
  source <(pycontain completion zsh)                               (in ~/.zshrc, after compinit)
The script is made from this pycontain's commands: make it again after an upgrade."""
COMMANDS: dict[str, tuple[list[Any], str, str]] = {
    "completion": ([], "bash|zsh", "print a shell completion script for bash or zsh"),
}
HELP = {"completion": INSTALL}

SHELLS = ("bash", "zsh")
NAME_KINDS = ("containers", "images", "volumes", "networks")

# Flags whose values are fixed words their metavar does not spell out (`--pull POLICY`). Keyed by the
# flag's long name; applied to whichever command has that flag. Kinds (containers, ...) may be mixed in.
VALUE_WORDS = {
    "--network": "networks =bridge =none =host",
    "--pull": "=missing =never =always",
    "--runtime": "=pycontain =runc =crun files",
    "--userns": "=auto =host",
    "--progress": "=auto =plain =tty",
    "--log-driver": "=json-file =none",
    "--restart": "=no =on-failure =always =unless-stopped",
    "--volume": "volumes files",
    "--volumes-from": "containers",
    "--platform": "=linux/amd64",
}
# Metavar words (upper case, without [..] and ...) -> what to complete there.
METAVAR_KINDS = {
    "CONTAINER": "containers", "IMAGE": "images", "VOLUME": "volumes", "NETWORK": "networks",
    "REPOSITORY": "images", "SOURCE": "images", "TARGET": "images",
    "FILE": "files", "PATH": "files", "TARBALL": "files", "SRC": "files", "DST": "files", "CONTEXT": "dirs",
    "DIR": "dirs",
}


# ---------------------------------------------------------------- the tables

def _tables() -> tuple[dict[str, tuple[list[Any], str, str]], dict[str, str], set[str]]:
    from pycontain import cli

    try:
        cli.load_all_plugins()
    except ImportError:
        # A plugin module named in cli.PLUGINS that is not there (yet): complete what does exist.
        for names in cli.PLUGINS.values():
            try:
                cli.load_plugin(names[0])
            except ImportError:
                continue
    return cli.COMMANDS, cli.ALIASES, set(cli.STOP_AT_POSITIONAL)


def _kinds_of(word: str, command: str, positional: bool = True) -> list[str]:
    """What completes where a metavar word stands: kinds and `=literal` words ([] for nothing)."""
    word = word.strip("[]").removesuffix("...").strip("[]")
    if re.fullmatch(r"[a-z][a-z-]*(\|[a-z][a-z-]*)*", word):
        return ["=" + w for w in word.split("|")]
    kinds: list[str] = []
    for part in word.split("|"):
        head = re.match(r"[A-Z_]*", part)
        name = head.group(0) if head else ""
        if name in METAVAR_KINDS:
            kind = METAVAR_KINDS[name]
        elif name == "NAME" and positional and command.split(" ")[0] == "network":
            kind = "networks"
        elif name == "NAME" and ":TAG" in part:  # NAME[:TAG]: an image's name
            kind = "images"
        else:
            continue
        if kind not in kinds:
            kinds.append(kind)
    return kinds


def positional_spec(command: str, metavar: str) -> str:
    """The positional arguments of a command, for the script: one comma-joined item list per position,
    a trailing `+` when the last repeats (`CONTAINER...`)."""
    words = metavar.split("\n", 1)[0].split("  or  ", 1)[0].split()
    specs = []
    for word in words:
        specs.append(",".join(_kinds_of(word, command)) or "-")
        if word.rstrip("]").endswith("..."):
            specs[-1] += "+"
            break
    while specs and specs[-1].rstrip("+") == "-":
        specs.pop()
    return " ".join(specs)


def flag_value_spec(names: tuple[str, ...], metavar: str, command: str) -> str:
    for name in names:
        if name in VALUE_WORDS:
            return VALUE_WORDS[name].replace(" ", ",")
    return ",".join(_kinds_of(metavar, command, positional=False))


class Model:
    """What the script needs, from the tables: top-level words, groups with their subcommands, and per
    command its flags, the flags that take a value, their values and its positionals."""

    def __init__(self) -> None:
        commands, aliases, stop = _tables()
        self.commands = commands
        self.stop = sorted(c for c in stop if c in commands)
        keys = list(commands) + list(aliases)
        self.groups: dict[str, list[str]] = {}
        for key in keys:
            if " " in key:
                group, sub = key.split(" ", 1)
                self.groups.setdefault(group, [])
                if sub not in self.groups[group]:
                    self.groups[group].append(sub)
        for command, (_, metavar, _) in commands.items():
            # A command whose first argument is one of some words (`network create|ls|...`) is a group too.
            first = positional_spec(command, metavar).split(" ")[0].rstrip("+")
            if " " not in command and first and all(w.startswith("=") for w in first.split(",")):
                self.groups.setdefault(command, [])
        for group, subs in self.groups.items():
            # `network create|ls|...` and `image prune|ls|rm`: the group's own command takes the verb.
            if group in commands:
                first = positional_spec(group, commands[group][1]).split(" ")[0]
                subs += [w[1:] for w in first.rstrip("+").split(",") if w.startswith("=") and w[1:] not in subs]
            subs.sort()
        self.top = sorted({k for k in commands if " " not in k} | set(self.groups) | {"help"})
        # "group sub" -> the command whose table parses it (itself, or what ALIASES names).
        self.targets = {k: k for k in commands if " " in k}
        self.targets.update({k: v for k, v in aliases.items() if v in commands})

    def flags(self, command: str) -> list[str]:
        return [n for names, *_ in self.commands[command][0] for n in names]

    def value_flags(self, command: str) -> list[str]:
        return [n for names, _, kind, *_ in self.commands[command][0] if kind != "flag" for n in names]


# ---------------------------------------------------------------- the script

def _q(text: str) -> str:
    """Single-quoted for sh (both shells read it the same way)."""
    return "'" + text.replace("'", "'\\''") + "'"


def _case(fn: str, arms: dict[str, list[str]], comment: str) -> list[str]:
    """A lookup function: `fn KEY` sets REPLY to the value of the arm KEY matches (else empty).
    Keys sharing a value share an arm."""
    by_value: dict[str, list[str]] = {}
    for value, keys in arms.items():
        by_value.setdefault(value, []).extend(keys)
    out = [f"# {comment}", f"{fn}() {{", "    case \"$1\" in"]
    for value, keys in by_value.items():
        if not keys:
            continue
        out.append(f"        {'|'.join(_q(k) for k in keys)}) REPLY={_q(value)} ;;")
    out += ["        *) REPLY= ;;", "    esac", "}"]
    return out


def _arms(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    arms: dict[str, list[str]] = {}
    for key, value in pairs:
        if value:
            arms.setdefault(value, []).append(key)
    return arms


def bash_body(model: Model) -> str:
    commands = model.commands
    data: list[str] = [
        "# Generated by `pycontain completion` from pycontain's own command tables: do not edit,",
        "# make it again (`pycontain completion bash|zsh`) after upgrading pycontain.",
        "",
        f"__pycontain_top={_q(' '.join(model.top))}",
        "__pycontain_global='--root --explain --help --version'",
        f"__pycontain_stop={_q(' '.join(model.stop))}",
        "",
    ]
    data += _case("__pycontain_subs", _arms([(g, " ".join(s)) for g, s in sorted(model.groups.items())]),
                  "the subcommands of a management group")
    data += _case("__pycontain_target", _arms([(k, v) for k, v in sorted(model.targets.items())]),
                  "`group sub` -> the command whose options it takes")
    data += _case("__pycontain_flags", _arms([(c, " ".join(model.flags(c))) for c in sorted(commands)]),
                  "every flag of a command")
    data += _case("__pycontain_valflags", _arms([(c, " " + " ".join(model.value_flags(c)) + " ")
                                                 for c in sorted(commands) if model.value_flags(c)]),
                  "the flags of a command that take a value (space-delimited both ends)")
    values = []
    for command in sorted(commands):
        for names, _, kind, metavar, _ in commands[command][0]:
            if kind == "flag":
                continue
            spec = flag_value_spec(names, metavar, command)
            values += [(f"{command} {name}", spec) for name in names]
    data += _case("__pycontain_values", _arms(values), "what the value of `command flag` is")
    data += _case("__pycontain_positionals", _arms([(c, positional_spec(c, commands[c][1])) for c in sorted(commands)]),
                  "the positional arguments of a command: per position, a `+` if the last repeats")
    return "\n".join(data) + "\n" + FUNCTIONS


# The completion function. Kept to what bash (4+) and zsh (in ksh emulation, under bashcompinit) both
# read the same way. It splits COMP_LINE itself, up to COMP_POINT, rather than trusting COMP_WORDS:
# bash splits COMP_WORDS at `=` and `:` too (COMP_WORDBREAKS), zsh does not, and `--root=/x`,
# `--network=br` and `alpine:3` must parse the same in both.
FUNCTIONS = r"""
# Completions of kind $1 (containers images volumes networks files dirs, or =word) matching $cur,
# appended to COMPREPLY.
__pycontain_add() {
    local item names= f opt
    for item in ${1//,/ }; do
        case $item in
            =*) names="$names ${item#=}" ;;
            containers|images|volumes|networks)
                if [ -n "$__pycontain_root" ]; then
                    names="$names $("$__pycontain_cmd" --root "$__pycontain_root" \
                        completion __names "$item" 2>/dev/null)"
                else
                    names="$names $("$__pycontain_cmd" completion __names "$item" 2>/dev/null)"
                fi ;;
            files|dirs)
                __pycontain_files=1
                opt=-f
                [ "$item" = dirs ] && opt=-d
                for f in $(compgen $opt -- "$__pycontain_value"); do
                    COMPREPLY[${#COMPREPLY[@]}]="$__pycontain_vprefix$f"
                done ;;
        esac
    done
    [ -n "$names" ] && __pycontain_words "$names"
}

# Words (space-separated) matching the value being completed, appended to COMPREPLY.
__pycontain_words() {
    local w
    for w in $(compgen -W "$1" -- "$__pycontain_value"); do
        COMPREPLY[${#COMPREPLY[@]}]="$__pycontain_vprefix$w"
    done
}

__pycontain_complete() {
    [ -n "${ZSH_VERSION-}" ] && emulate -L ksh
    local line ws n cur i w cmd sub npos spec last value flag j ch noglob=
    COMPREPLY=()
    __pycontain_root= __pycontain_files= __pycontain_vprefix=
    __pycontain_cmd=pycontain
    line=${COMP_LINE-}
    if [ -n "$line" ]; then
        line=${line:0:${COMP_POINT:-${#line}}}
    else
        line="${COMP_WORDS[*]:0:COMP_CWORD+1}"
    fi
    case $- in *f*) noglob=1 ;; esac
    set -f
    ws=( $line )
    [ -z "$noglob" ] && set +f
    case $line in *[[:space:]]|'') ws[${#ws[@]}]= ;; esac
    n=${#ws[@]}
    cur=${ws[n-1]}
    __pycontain_cmd=${ws[0]}
    __pycontain_value=$cur

    # Global flags before the command.
    i=1
    while [ $i -lt $((n - 1)) ]; do
        w=${ws[i]}
        case $w in
            --root)
                if [ $((i + 1)) -eq $((n - 1)) ]; then __pycontain_add dirs; __pycontain_finish; return 0; fi
                __pycontain_root=${ws[i+1]}; i=$((i + 2)); continue ;;
            --root=*) __pycontain_root=${w#--root=} ;;
            -*) ;;
            *) break ;;
        esac
        i=$((i + 1))
    done
    # Only an existing root is passed on: `--root` creates a missing one, a TAB must not.
    [ -n "$__pycontain_root" ] && [ ! -d "$__pycontain_root" ] && __pycontain_root=
    if [ $i -ge $((n - 1)) ]; then
        case $cur in
            --root=*) __pycontain_vprefix=--root= __pycontain_value=${cur#--root=}; __pycontain_add dirs ;;
            -*) __pycontain_words "$__pycontain_global" ;;
            *) __pycontain_words "$__pycontain_top" ;;
        esac
        __pycontain_finish; return 0
    fi
    cmd=${ws[i]}
    i=$((i + 1))
    if [ "$cmd" = help ]; then
        [ $i -eq $((n - 1)) ] && __pycontain_words "$__pycontain_top"
        __pycontain_finish; return 0
    fi

    # A management group's subcommand.
    __pycontain_subs "$cmd"
    if [ -n "$REPLY" ]; then
        if [ $i -eq $((n - 1)) ]; then
            case $cur in
                -*) ;;
                *) __pycontain_words "$REPLY"; __pycontain_finish; return 0 ;;
            esac
        else
            sub=${ws[i]}
            case $sub in
                -*) ;;
                *)
                    __pycontain_target "$cmd $sub"
                    if [ -n "$REPLY" ]; then cmd=$REPLY; i=$((i + 1)); fi ;;
            esac
        fi
    fi
    __pycontain_flags "$cmd"
    local flags=$REPLY
    __pycontain_valflags "$cmd"
    local valflags=$REPLY
    local stop=
    case " $__pycontain_stop " in *" $cmd "*) stop=1 ;; esac

    # The words between the command and the cursor: flags (with their values) and positionals.
    npos=0
    local dashdash=
    while [ $i -lt $((n - 1)) ]; do
        w=${ws[i]}
        if [ -n "$stop" ] && [ $npos -gt 0 ]; then
            # The container's own command line: nothing of pycontain's is completed there.
            __pycontain_add files; __pycontain_finish; return 0
        fi
        flag=
        if [ -n "$dashdash" ]; then
            npos=$((npos + 1))
        else
            case $w in
                --) dashdash=1 ;;
                --*=*) ;;
                --*) flag=$w ;;
                -?*)
                    # A cluster like -it or -dw: a value flag in it takes the rest, or the next word.
                    j=1
                    while [ $j -lt ${#w} ]; do
                        ch=${w:$j:1}
                        case $valflags in
                            *" -$ch "*) [ $((j + 1)) -eq ${#w} ] && flag=-$ch; break ;;
                        esac
                        j=$((j + 1))
                    done ;;
                *) npos=$((npos + 1)) ;;
            esac
        fi
        if [ -n "$flag" ]; then
            case $valflags in
                *" $flag "*)
                    if [ $((i + 1)) -eq $((n - 1)) ]; then
                        __pycontain_values "$cmd $flag"
                        __pycontain_add "$REPLY"; __pycontain_finish; return 0
                    fi
                    i=$((i + 1)) ;;
            esac
        fi
        i=$((i + 1))
    done
    if [ -n "$stop" ] && [ $npos -gt 0 ]; then
        __pycontain_add files; __pycontain_finish; return 0
    fi

    # The word under the cursor.
    if [ -z "$dashdash" ]; then
        case $cur in
            --*=*)
                flag=${cur%%=*}
                case $valflags in
                    *" $flag "*)
                        __pycontain_vprefix=$flag= __pycontain_value=${cur#*=}
                        __pycontain_values "$cmd $flag"
                        __pycontain_add "$REPLY" ;;
                esac
                __pycontain_finish; return 0 ;;
            -*)
                __pycontain_words "$flags --help"
                __pycontain_finish; return 0 ;;
        esac
    fi
    __pycontain_positionals "$cmd"
    spec=
    last=
    i=0
    for w in $REPLY; do
        last=$w
        [ $i -eq $npos ] && spec=$w
        i=$((i + 1))
    done
    case $last in *+) [ $npos -ge $((i - 1)) ] && spec=$last ;; esac
    spec=${spec%+}
    [ "$spec" = - ] && spec=
    __pycontain_add "$spec"
    __pycontain_finish
    return 0
}

# bash replaces only the part of the word after its last COMP_WORDBREAKS character (`=`, `:`):
# drop that part of the completed words too. zsh replaces the whole word and has no COMP_WORDBREAKS.
__pycontain_finish() {
    local brk= prefix= k
    case ${COMP_WORDBREAKS-} in *=*) brk="$brk=" ;; esac
    case ${COMP_WORDBREAKS-} in *:*) brk="$brk:" ;; esac
    case $cur in *["$brk"]*) [ -n "$brk" ] && prefix=${cur%"${cur##*["$brk"]}"} ;; esac
    if [ -n "$prefix" ]; then
        k=0
        while [ $k -lt ${#COMPREPLY[@]} ]; do
            COMPREPLY[k]=${COMPREPLY[k]#"$prefix"}
            k=$((k + 1))
        done
    fi
    if [ -n "$__pycontain_files" ] && [ -z "${ZSH_VERSION-}" ]; then
        compopt -o filenames 2>/dev/null
    fi
    return 0
}
"""

BASH_FOOTER = "complete -F __pycontain_complete pycontain\n"
# zsh: the same function through bashcompinit, rather than a native _arguments spec. One function means
# one behaviour to test (the unit tests drive it in bash), the tables are emitted once, and the
# flag/value/positional logic (clusters like -dw, `group sub` aliases, the container's own command
# after run's image) would otherwise need a second implementation in _arguments' very different terms.
ZSH_HEADER = """#compdef pycontain
# Sourced (`source <(pycontain completion zsh)` after compinit) or autoloaded from $fpath as _pycontain.
autoload -U +X compinit && { (( ${+_comps} )) || compinit; }
autoload -U +X bashcompinit && bashcompinit
"""
# Autoloaded from $fpath, this file is the body of _pycontain, run at the first TAB: after `complete`
# has taken over for the next ones, complete this one too.
ZSH_FOOTER = """if [[ ${funcstack[1]-} == _pycontain ]]; then
    _bash_complete -F __pycontain_complete
fi
"""


def script(shell: str) -> str:
    if shell not in SHELLS:
        raise UsageError(f"unsupported shell {shell!r}: pycontain completes bash and zsh")
    body = bash_body(Model())
    if shell == "zsh":
        return ZSH_HEADER + body + BASH_FOOTER + ZSH_FOOTER
    return body + BASH_FOOTER


# ---------------------------------------------------------------- names, for the script

def names(paths: Any, kind: str) -> list[str]:
    """What a TAB offers for a container, image, volume or network: directory listings only."""
    if kind == "containers":
        try:
            return sorted(e for e in os.listdir(paths.names) if not e.startswith("."))
        except OSError:
            return []
    if kind == "images":
        from pycontain.images import reference
        from pycontain.images.store import Store

        out = set()
        for ref in Store(paths).refs():
            try:
                out.add(reference.parse(ref).familiar)
            except UsageError:
                continue
        return sorted(out)
    if kind == "volumes":
        from pycontain import volumes

        return volumes.names(paths)
    if kind == "networks":
        from pycontain.network import ipam

        return ipam.names(paths)
    raise UsageError(f"unknown kind {kind!r}: one of {', '.join(NAME_KINDS)}")


def cmd_completion(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    if pos[:1] == ["__names"]:
        if len(pos) != 2:
            raise UsageError(f"usage: pycontain completion __names {'|'.join(NAME_KINDS)}")
        try:
            found = names(paths, pos[1])
        except (PycontainError, OSError, ValueError):
            if pos[1] not in NAME_KINDS:
                raise
            return 0  # a damaged store completes nothing; the command itself will say what is wrong
        if found:
            sys.stdout.write("\n".join(found) + "\n")
        return 0
    if len(pos) != 1:
        raise UsageError("usage: pycontain completion bash|zsh (see `pycontain completion --help`)")
    sys.stdout.write(script(pos[0]))
    return 0


HANDLERS = {"completion": cmd_completion}
