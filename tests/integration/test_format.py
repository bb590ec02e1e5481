"""--format (Go templates as Docker's CLI applies them) and the listing flags of ps, images, history,
inspect and stats, on real containers in the test's own --root."""

from __future__ import annotations

import json

import pytest

from support import Pycontain, assert_pycontain_error


def _ids(pc: Pycontain, *args: str) -> list[str]:
    return pc.ok("ps", "-q", *args).stdout.split()


def test_ps_templates_from_docker_documentation(pc: Pycontain) -> None:
    cid = pc.ok("create", "--name", "web", "busybox", "echo", "a-rather-long-command-line").stdout.strip()
    short = cid[:12]
    # docker ps --format "{{.ID}}: {{.Command}}"
    assert pc.ok("ps", "-a", "--format", "{{.ID}}: {{.Command}}").stdout == f'{short}: "echo a-rather-long-…"\n'
    assert pc.ok("ps", "-a", "--no-trunc", "--format", "{{.ID}}: {{.Command}}").stdout == \
        f'{cid}: "echo a-rather-long-command-line"\n'
    # table with Docker's headers, aligned as Docker's tabwriter (columns >= 10 wide, 3 blanks apart)
    out = pc.ok("ps", "-a", "--format", "table {{.ID}}\\t{{.Names}}\\t{{.State}}").stdout.splitlines()
    assert out == ["CONTAINER ID   NAMES     STATE", f"{short}   web       created"]
    out = pc.ok("ps", "-a", "--format", "{{.Names}} {{.Status}} {{.Image}} {{.Networks}} {{.RunningFor}}").stdout
    assert out.startswith("web Created busybox") and out.rstrip().endswith(" ago"), out
    # --format json: one object per line, Docker's keys
    row = json.loads(pc.ok("ps", "-a", "--format", "json").stdout)
    assert row["ID"] == short and row["Names"] == "web" and row["State"] == "created" and row["Status"] == "Created"
    assert set(row) >= {"Command", "CreatedAt", "Image", "Labels", "Mounts", "Networks", "Ports", "RunningFor",
                        "Size", "LocalVolumes"}
    # `--format table` is the default table
    default = pc.ok("ps", "-a").stdout.splitlines()
    assert pc.ok("ps", "-a", "--format", "table").stdout.splitlines() == default
    assert default[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert default[1].startswith(short) and default[1].endswith("web")


def test_ps_filters_limits_and_size(pc: Pycontain) -> None:
    first = pc.ok("create", "--name", "one", "busybox", "true").stdout.strip()[:12]
    assert pc("run", "--name", "two", "busybox", "sh", "-c", "echo hello > /file; exit 3").returncode == 3
    two = pc.inspect("two")["Id"][:12]
    pc.ok("run", "--name", "three", "busybox", "true")
    three = pc.inspect("three")["Id"][:12]
    assert _ids(pc) == []  # nothing runs
    assert _ids(pc, "-a") == [three, two, first]  # newest first
    assert _ids(pc, "--filter", "status=exited") == [three, two]  # a status filter implies -a, as in Docker
    assert _ids(pc, "-f", "status=created") == [first]
    assert _ids(pc, "-a", "--filter", "exited=3") == [two]
    assert _ids(pc, "-a", "--filter", "exited=3", "--filter", "exited=0") == [three, two]  # same key: OR
    assert _ids(pc, "-a", "--filter", "name=t", "--filter", "status=exited") == [three, two]  # different: AND
    assert _ids(pc, "-a", "--filter", "name=^two$") == [two]
    assert _ids(pc, "-a", "--filter", f"id={first[:6]}") == [first]
    assert _ids(pc, "-a", "--filter", "ancestor=busybox") == [three, two, first]
    busybox_id = pc.inspect("busybox")["Id"]
    assert _ids(pc, "-a", "--filter", f"ancestor={busybox_id[7:19]}") == [three, two, first]
    assert _ids(pc, "-a", "--filter", "ancestor=alpine") == []
    assert _ids(pc, "-a", "--filter", "network=none") == [three, two, first]
    assert _ids(pc, "-a", "--filter", "label=nope") == []
    assert _ids(pc, "-a", "--filter", "before=two") == [first]
    assert _ids(pc, "-a", "--filter", "since=two") == [three]
    assert _ids(pc, "-n", "2") == [three, two]
    assert _ids(pc, "-l") == [three]
    assert pc.ok("ps", "-aq", "--no-trunc", "-l").stdout.strip() == pc.inspect("three")["Id"]
    # -s: the writable layer (two wrote 6 bytes) and the image's, as Docker's SIZE column
    out = pc.ok("ps", "-a", "-s", "--filter", "name=two").stdout.splitlines()
    assert out[0].split()[-1] == "SIZE", out
    assert out[1].endswith(f"(virtual {pc.ok('images', '--format', '{{.Size}}', 'busybox').stdout.strip()})"), out
    size = pc.ok("ps", "-a", "--filter", "name=two", "--format", "{{.Size}}").stdout.strip()
    assert size.startswith("6B (virtual ") and size.endswith("B)"), size


def test_ps_lists_a_running_container_with_its_status(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "live", "busybox", "sleep", "60")
    pc.wait_until_running("live")
    assert pc.ok("ps", "--format", "{{.Names}} {{.State}}").stdout == "live running\n"
    assert pc.ok("ps", "--format", "{{.Status}}").stdout.startswith("Up ")
    assert pc.ok("ps", "--filter", "status=running", "--format", "{{.Names}}").stdout == "live\n"


@pytest.mark.parametrize("args", [
    ["ps", "--filter", "colour=red"],
    ["ps", "--filter", "status=sleeping"],
    ["ps", "--filter", "nokey"],
    ["ps", "--filter", "exited=x"],
    ["ps", "-n", "many"],
    ["ps", "--format", "{{.ID"],
    ["ps", "--format", "{{nosuchfunc .ID}}"],
    ["ps", "-a", "--format", "{{.Names.Deeper}}"],
    ["images", "--filter", "dangling=maybe"],
    ["images", "--filter", "size=1"],
    ["images", "--format", "{{if}}"],
    ["history", "--format", "{{end}}", "busybox"],
    ["inspect", "--format", "{{.State.Status", "busybox"],
    ["inspect", "--format", "{{.Config.Cmd.Nope}}", "busybox"],
    ["inspect", "--type", "plugin", "busybox"],
])
def test_bad_templates_and_filters_are_one_line_125(pc: Pycontain, args: list[str]) -> None:
    pc.ok("create", "--name", "x", "busybox", "true")
    res = pc(*args)
    assert_pycontain_error(res, 125)
    assert res.stdout == ""


def test_template_error_names_the_place_as_go_does(pc: Pycontain) -> None:
    res = pc("inspect", "--format", "{{.State.Health.Status}}", pc.ok("create", "busybox", "true").stdout.strip())
    data = pc.inspect(pc.ok("ps", "-aq").stdout.strip())
    if data["State"].get("Health", "absent") is None:
        assert_pycontain_error(res, 125)
        assert "nil pointer evaluating interface {}.Status" in res.stderr
    else:  # no Health key: a missing key prints <no value>, as Docker's map fallback does
        assert res.stdout == "<no value>\n"
    res = pc("ps", "-a", "--format", "{{.ID}} {{len .Names 2}}")
    assert_pycontain_error(res, 125)
    assert res.stderr.startswith("pycontain: template: :1:")


def test_inspect_format_on_containers_and_images(pc: Pycontain) -> None:
    assert pc("run", "--name", "done", "busybox", "sh", "-c", "exit 4").returncode == 4
    info = pc.inspect("done")
    assert pc.ok("inspect", "--format", "{{.State.Status}}", "done").stdout == "exited\n"
    assert pc.ok("inspect", "-f", "{{.State.ExitCode}} {{.Id}}", "done").stdout == f"4 {info['Id']}\n"
    assert pc.ok("container", "inspect", "--format", "{{json .State}}", "done").stdout.strip() == \
        json.dumps(info["State"], separators=(",", ":"), ensure_ascii=False)
    # several objects: one output each; an image by name through `image inspect`
    both = pc.ok("inspect", "--format", "{{.Id}}", "done", "busybox").stdout.splitlines()
    image = pc.inspect("busybox")
    assert both == [info["Id"], image["Id"]]
    layers = pc.ok("image", "inspect", "--format", "{{json .RootFS.Layers}}", "busybox").stdout
    assert json.loads(layers) == image["RootFS"]["Layers"]
    assert pc.ok("image", "inspect", "--format", "{{range .RootFS.Layers}}{{.}} {{end}}", "busybox").stdout == \
        " ".join(image["RootFS"]["Layers"]) + " \n"
    assert pc.ok("inspect", "--format", "{{.Nope}}", "busybox").stdout == "<no value>\n"
    assert pc.ok("inspect", "--format", "{{if eq .State.ExitCode 4}}four{{end}}", "done").stdout == "four\n"
    # --type picks the kind; --format json is the plain JSON array
    assert_pycontain_error(pc("inspect", "--type", "image", "done"), 125)
    assert json.loads(pc.ok("inspect", "--format", "json", "done").stdout)[0]["Id"] == info["Id"]
    assert pc.ok("inspect", "--type", "container", "-f", "{{.Id}}", info["Id"][:12]).stdout.strip() == info["Id"]
    # a missing object among found ones: the others still print, the exit code says it
    res = pc("inspect", "--format", "{{.Id}}", "done", "no-such-thing")
    assert res.returncode != 0 and res.stdout == info["Id"] + "\n" and len(res.stderr.splitlines()) == 1


def test_images_format_filters_and_flags(pc: Pycontain) -> None:
    busybox = pc.inspect("busybox")["Id"]
    pc.ok("tag", "busybox", "other/thing:v1")
    # docker images --format "{{.ID}}: {{.Repository}}"
    out = pc.ok("images", "--format", "{{.ID}}: {{.Repository}}").stdout.splitlines()
    assert sorted(out) == sorted([f"{busybox[7:19]}: busybox", f"{busybox[7:19]}: other/thing"])
    out = pc.ok("images", "--format", "table {{.ID}}\\t{{.Repository}}\\t{{.Tag}}").stdout.splitlines()
    assert out[0] == "IMAGE ID       REPOSITORY    TAG"
    assert f"{busybox[7:19]}   busybox       latest" in out
    assert pc.ok("images", "--no-trunc", "--format", "{{.ID}}", "busybox").stdout.strip() == busybox
    assert pc.ok("images", "--filter", "reference=busy*", "--format", "{{.Repository}}:{{.Tag}}").stdout == \
        "busybox:latest\n"
    assert pc.ok("images", "--filter", "reference=*/thing:v*", "--format", "{{.Repository}}").stdout == \
        "other/thing\n"
    assert pc.ok("images", "--filter", "reference=thing", "--format", "{{.Repository}}").stdout == ""
    assert pc.ok("images", "--filter", "dangling=true", "-q").stdout == ""
    assert pc.ok("images", "--filter", "dangling=false", "-q").stdout.split() == [busybox[7:19]]
    assert pc.ok("images", "-a", "-q", "--filter", "label=none").stdout == ""
    row = json.loads(pc.ok("images", "--format", "json", "busybox").stdout)
    assert row["Repository"] == "busybox" and row["Tag"] == "latest" and row["ID"] == busybox[7:19]
    assert set(row) >= {"CreatedAt", "CreatedSince", "Digest", "Size"}
    default = pc.ok("images").stdout.splitlines()
    assert default[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert pc.ok("image", "ls", "--format", "{{.Repository}}", "--filter", "reference=busybox").stdout == \
        "busybox\n"


def test_history_format(pc: Pycontain) -> None:
    image = pc.inspect("busybox")["Id"]
    out = pc.ok("history", "--format", "{{.ID}}|{{.CreatedBy}}|{{.Size}}", "busybox").stdout.splitlines()
    assert out[0].startswith(image[7:19] + "|") and out[0].split("|")[2].endswith("B")
    out = pc.ok("history", "--format", "table {{.ID}}\\t{{.Size}}", "busybox").stdout.splitlines()
    assert out[0] == "IMAGE          SIZE"
    row = json.loads(pc.ok("history", "--format", "json", "busybox").stdout.splitlines()[0])
    assert set(row) == {"ID", "CreatedSince", "CreatedAt", "CreatedBy", "Size", "Comment"}
    assert pc.ok("history", "-q", "busybox").stdout.splitlines()[0] == image[7:19]


def test_stats_format_no_stream(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "busy", "busybox", "sleep", "60")
    pc.wait_until_running("busy")
    out = pc.ok("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}} {{.Container}}", "busy").stdout
    assert out == "busy 1 busy\n"
    out = pc.ok("stats", "--no-stream", "--format", "table {{.Name}}\\t{{.MemUsage}}").stdout.splitlines()
    assert out[0] == "NAME      MEM USAGE / LIMIT" and out[1].startswith("busy ")
    row = json.loads(pc.ok("stats", "--no-stream", "--format", "json").stdout)
    assert row["Name"] == "busy" and row["CPUPerc"].endswith("%") and len(row["ID"]) == 12
    assert_pycontain_error(pc("stats", "--no-stream", "--format", "{{.Name"), 125)
