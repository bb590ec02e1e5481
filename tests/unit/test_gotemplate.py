"""gotemplate: Go's text/template as Docker's --format uses it, checked against the examples of Docker's
documentation (docker inspect / ps / images --format, "Format command and log output") and Go's rules."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pycontain import gotemplate
from pycontain.errors import UsageError
from pycontain.gotemplate import TemplateError, parse, render, table

# A container as `inspect` shows it (Docker's field names), trimmed to what the examples read.
CONTAINER: dict[str, Any] = {
    "Id": "4fa6e0f0c6786287e131c3852c58a2e01cc697a68231826813597e4994f1d6e2",
    "Name": "/web",
    "LogPath": "/var/lib/docker/containers/4fa6/4fa6-json.log",
    "State": {"Status": "running", "Running": True, "Pid": 1234, "ExitCode": 0, "Health": None},
    "Config": {"Image": "nginx:alpine", "Env": ["PATH=/usr/bin", "A=1"], "Labels": {"b": "2", "a": "1"},
               "Cmd": ["nginx", "-g", "daemon off;"]},
    "HostConfig": {"Memory": 0, "NanoCpus": 500000000},
    "NetworkSettings": {
        "IPAddress": "172.17.0.2",
        "Networks": {"bridge": {"IPAddress": "172.17.0.2", "MacAddress": "02:42:ac:11:00:02"}},
        "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "443/tcp": None},
    },
    "RootFS": {"Type": "layers", "Layers": ["sha256:aa", "sha256:bb"]},
    "Mounts": [],
}
PS_ROW = {"ID": "4fa6e0f0c678", "Image": "nginx:alpine", "Command": '"nginx -g \'daemon of…"',
          "Names": "web", "Status": "Up 3 minutes", "State": "running", "Ports": "0.0.0.0:8080->80/tcp",
          "Labels": "a=1,b=2", "Label": lambda k: {"a": "1", "b": "2"}.get(k, "")}


@pytest.mark.parametrize(("template", "expected"), [
    # docker inspect --format (Docker's reference examples)
    ("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "172.17.0.2"),
    ("{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}", "02:42:ac:11:00:02"),
    ("{{.LogPath}}", "/var/lib/docker/containers/4fa6/4fa6-json.log"),
    ("{{.Config.Image}}", "nginx:alpine"),
    ("{{range $p, $conf := .NetworkSettings.Ports}} {{$p}} -> {{(index $conf 0).HostPort}} {{end}}",
     None),
    ('{{(index (index .NetworkSettings.Ports "80/tcp") 0).HostPort}}', "8080"),
    ("{{json .Config.Labels}}", '{"b":"2","a":"1"}'),
    ("{{json .RootFS.Layers}}", '["sha256:aa","sha256:bb"]'),
    ("{{.State.Status}}", "running"),
    ("{{.State.Running}} {{.State.Pid}} {{.HostConfig.NanoCpus}}", "true 1234 500000000"),
    ("{{.Config.Labels}}", "map[a:1 b:2]"),
    ("{{.Config.Env}}", "[PATH=/usr/bin A=1]"),
    ('{{index .Config.Labels "a"}}|{{index .Config.Labels "nope"}}', "1|"),
    ("{{.Nope}}|{{.Nope.Deeper}}", "<no value>|<no value>"),
    ("{{.State.Health}}", "<nil>"),
    # "Format command and log output" (Docker's formatting guide)
    ('{{join .Config.Cmd " , "}}', "nginx , -g , daemon off;"),
    ("{{lower .State.Status}} {{upper .State.Status}} {{title .State.Status}}", "running RUNNING Running"),
    ('{{split .Config.Image ":"}}', "[nginx alpine]"),
    ("{{println .State.Status}}", "running\n"),
    ('{{range $i, $e := .Config.Env}}{{if $i}},{{end}}{{$e}}{{end}}', "PATH=/usr/bin,A=1"),
    ("{{.Name | upper}}", "/WEB"),
    ('{{printf "%s has pid %d" .Name .State.Pid}}', "/web has pid 1234"),
    ('{{printf "%-8s|%5s|%05d|%.2f|%q|%v|%t|%x" "ab" "cd" 42 3.14159 "q" .Config.Labels true 255}}',
     'ab      |   cd|00042|3.14|"q"|map[a:1 b:2]|true|ff'),
    ('{{printf "%d"}} {{printf "%d" "x"}} {{printf "" 1}}', "%!d(MISSING) %!d(string=x) %!(EXTRA int=1)"),
    ("{{len .Config.Env}} {{len .Name}} {{len .Config.Labels}}", "2 4 2"),
    # conditions, Go truthiness, comparisons
    ('{{if eq .State.Status "running"}}up{{else if eq .State.Status "exited"}}down{{else}}?{{end}}', "up"),
    ('{{if eq .State.Status "paused" "running"}}one of{{end}}', "one of"),
    ("{{if .State.Health}}h{{else}}no health{{end}}", "no health"),
    ("{{if .Mounts}}m{{else}}none{{end}}{{if .Nope}}x{{end}}", "none"),
    ("{{if and .State.Running (gt .State.Pid 0)}}live{{end}}", "live"),
    ("{{if or .Mounts .Config.Env}}some{{end}}{{if not .Mounts}} empty{{end}}", "some empty"),
    ("{{if ne .State.ExitCode 0}}bad{{else}}ok{{end}} {{lt 1 2}} {{le 2 2}} {{ge 1 2}} {{lt \"a\" \"b\"}}",
     "ok true true false true"),
    ("{{and 1 0 2}}|{{or 0 \"\" 7}}|{{and 1 2}}", "0|7|2"),
    ("{{with .NetworkSettings}}{{.IPAddress}}{{end}}", "172.17.0.2"),
    ("{{with .State.Health}}{{.Status}}{{else}}none{{end}}", "none"),
    ("{{range .Mounts}}x{{else}}no mounts{{end}}", "no mounts"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "a=1;b=2;"),
    ("{{range .Config.Env}}{{if eq . \"A=1\"}}{{break}}{{end}}{{.}};{{end}}", "PATH=/usr/bin;"),
    ("{{range .Config.Env}}{{if eq . \"A=1\"}}{{continue}}{{end}}{{.}};{{end}}", "PATH=/usr/bin;"),
    ("{{$n := .Name}}{{with .State}}{{$n}}:{{.Status}}:{{$.Id | printf \"%.4s\"}}{{end}}", "/web:running:4fa6"),
    ("{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}", "2"),
    # whitespace trimming, comments, literals
    ("a  {{- .State.Status -}}  b", "arunningb"),
    ("{{- /* a comment */ -}}  x", "x"),
    ("{{/* comment */}}y", "y"),
    ("{{\"quoted\\t\"}}{{`raw\\t`}}{{'a'}} {{1.5}} {{-2}} {{0x10}} {{1e3}} {{print nil}}",
     "quoted\traw\\t97 1.5 -2 16 1000 <nil>"),
    ("{{print 1 2 \"a\" 3 4}}", "1 2a3 4"),
    ("{{slice .Name 1}} {{slice .Config.Env 0 1}}", "web [PATH=/usr/bin]"),
    ("{{pad .Name 1 2}}|{{truncate .Name 2}}", " /web  |/w"),
    ("{{json .}}", None),  # checked separately: the whole object round-trips
])
def test_docker_documentation_examples(template: str, expected: str | None) -> None:
    if template.startswith("{{range $p"):
        # 443/tcp is null: Go's `index` of nil is an error; Docker's example runs on ports all published
        data = dict(CONTAINER, NetworkSettings={"Ports": {"80/tcp": [{"HostPort": "8080"}]}})
        assert render(template, data) == " 80/tcp -> 8080 "
        return
    out = render(template, CONTAINER)
    if expected is None:
        import json

        assert json.loads(out) == CONTAINER
        return
    assert out == expected


def test_ps_and_images_listing_examples() -> None:
    # docker ps --format "{{.ID}}: {{.Command}}"
    assert table("{{.ID}}: {{.Command}}", [PS_ROW]) == ['4fa6e0f0c678: "nginx -g \'daemon of…"']
    # docker ps --format 'table {{.ID}}\t{{.Labels}}' (the two characters \t, as typed in single quotes)
    headers = {"ID": "CONTAINER ID", "Labels": "LABELS", "Names": "NAMES", "Label": "LABEL"}
    assert table("table {{.ID}}\\t{{.Labels}}", [PS_ROW], headers) == [
        "CONTAINER ID   LABELS", "4fa6e0f0c678   a=1,b=2"]
    # columns of at least 10, three blanks of padding; the last column is not padded
    rows = [{"ID": "abc", "Names": "n"}, {"ID": "abcdef012345", "Names": "longer-name"}]
    assert table("table {{.ID}}\t{{.Names}}", rows, headers) == [
        "CONTAINER ID   NAMES", "abc            n", "abcdef012345   longer-name"]
    assert table("table {{.Names}}\t{{.ID}}", rows[:1], headers) == ["NAMES     CONTAINER ID", "n         abc"]
    # a method with an argument: .Label "a"; its header is LABEL
    assert table('table {{.Names}}\t{{.Label "a"}}', [PS_ROW], headers) == ["NAMES     LABEL", "web       1"]
    # functions in a header leave the header text alone (Docker's header functions)
    assert table("table {{upper .Names}}\t{{json .Status}}", [PS_ROW], headers) == [
        "NAMES     STATUS", 'WEB       "Up 3 minutes"']
    # without `table`: one output per row, no header; \n works as in Docker
    assert table("{{.Names}}\\n{{.ID}}", [PS_ROW]) == ["web\n4fa6e0f0c678"]
    assert table("table", [], headers) == [""]


def test_tabwriter_blocks_follow_go() -> None:
    # a line with fewer cells ends the column block (Go's tabwriter), so the next block aligns on its own
    assert gotemplate.tabwrite(["a\tb\tc", "aaaaaaaaaaaaa\tb", "x", "y\tz"]) == [
        "a               b         c", "aaaaaaaaaaaaa   b", "x", "y         z"]


def test_json_is_compact_and_keeps_stored_key_order_and_html() -> None:
    assert render("{{json .}}", {"b": [1, None, True], "a": "<&>", "é": 1.5}) == '{"b":[1,null,true],"a":"<&>","é":1.5}'
    assert render("{{json .Nope}}", {}) == "null"


def test_go_number_printing() -> None:
    cases = {1000000.0: "1e+06", 123456.0: "123456", 1.5: "1.5", 0.0001: "0.0001", 0.00001: "1e-05",
             1234567.0: "1.234567e+06", -2.5: "-2.5", 0.0: "0"}
    for value, text in cases.items():
        assert render("{{.}}", value) == text, value


@pytest.mark.parametrize(("template", "message"), [
    ("{{.Name", "template: :1: unclosed action"),
    ("{{if .X}}a", "template: :1: unexpected EOF"),
    ("a{{end}}", "template: :1: unexpected {{end}}"),
    ("{{foo .X}}", 'template: :1: function "foo" not defined'),
    ("{{}}", "template: :1: missing value for command"),
    ("{{$x}}", 'template: :1: undefined variable "$x"'),
    ("{{break}}", "template: :1: {{break}} outside {{range}}"),
    ("{{\"a\" 1}}", "template: :1: can't give argument to non-function \"a\""),
    ("{{/* open", "template: :1: unclosed comment"),
    ("\n{{.A | \"x\"}}", "template: :2: non executable command in pipeline stage 2"),
    ("{{.A #}}", "template: :1: unrecognized character in action: '#'"),
    ("{{nil}}", "template: :1: nil is not a command"),
    ('{{template "x"}}', "template: :1: {{template}} is not supported in a --format template"),
])
def test_parse_errors_are_one_line(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as e:
        parse(template)
    assert str(e.value) == message
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(("template", "message"), [
    ("{{.State.Health.Status}}",
     'template: :1:2: executing "" at <.State.Health.Status>: nil pointer evaluating interface {}.Status'),
    ("{{.Name.X}}", 'template: :1:2: executing "" at <.Name.X>: can\'t evaluate field X in type string'),
    ("x {{len .State.Pid}}", 'template: :1:4: executing "" at <len .State.Pid>: error calling len: len of type int'),
    ("{{index .Config.Env 5}}",
     'template: :1:2: executing "" at <index .Config.Env 5>: error calling index: index out of range: 5'),
    ('{{join .Name ","}}', 'template: :1:2: executing "" at <join .Name ",">: '
                           "wrong type for value; expected []string; got string"),
    ("{{upper .State.Pid}}",
     'template: :1:2: executing "" at <upper .State.Pid>: wrong type for value; expected string; got int'),
    ('{{.Name "arg"}}', 'template: :1:2: executing "" at <.Name>: Name is not a method but has arguments'),
    ("{{lt .Config.Env 1}}", None),
    ('{{eq 1 "a"}}', 'template: :1:2: executing "" at <eq 1 "a">: error calling eq: incompatible types for comparison'),
    ("{{range .Name}}{{end}}", 'template: :1:8: executing "" at <.Name>: range can\'t iterate over /web'),
])
def test_execution_errors_are_one_line_template_errors(template: str, message: str | None) -> None:
    with pytest.raises(TemplateError) as e:
        render(template, CONTAINER)
    assert isinstance(e.value, UsageError) and e.value.exit_code == 125
    text = str(e.value)
    assert "\n" not in text and text.startswith("template: ")
    if message is not None:
        assert text == message


def test_methods_are_called_lazily() -> None:
    calls = []

    def size() -> str:
        calls.append(1)
        return "12B"

    row = {"ID": "x", "Size": size}
    assert render("{{.ID}}", row) == "x" and calls == []
    assert render("{{.Size}}", row) == "12B" and calls == [1]
    assert render("{{json .}}", row) == '{"ID":"x","Size":"12B"}'


def test_parse_once_execute_many_is_fast() -> None:
    tmpl = parse("{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}")
    rows = [dict(PS_ROW, RunningFor="3 minutes ago") for _ in range(200)]
    start = time.perf_counter()
    for row in rows:
        tmpl.execute(row)
    assert time.perf_counter() - start < 0.05  # a generous bound: ~1 ms here
