"""Store commands (images, tag, rmi, history, image prune) and moving images around (save, load, push).

The archive and registry round trips are checked with skopeo, never with pycontain itself.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from images_support import LocalRegistry, skopeo, store_files
from support import ALPINE_TARBALL, Pycontain, assert_pycontain_error


# The registry fixtures (registry, htpasswd_registry, token_registry, fresh_registry, pcr).
pytest_plugins = ("images_support",)

def layer_dirs(pc: Pycontain) -> list[str]:
    return [f for f in store_files(pc.root) if f.startswith("layers/") and f.count("/") == 1
            and not f.endswith(".json")]


def test_images_table_tag_and_history(pcr: Pycontain) -> None:
    image_id = pcr.ok("import", ALPINE_TARBALL, "alp:1").stdout.strip()
    pcr.ok("tag", "alp:1", "example.com/team/alp:2")
    table = pcr.ok("images").stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    rows = [line.split()[:3] for line in table[1:]]
    assert ["alp", "1", image_id[7:19]] in rows and ["example.com/team/alp", "2", image_id[7:19]] in rows
    assert pcr.ok("images", "-q").stdout.split() == [image_id[7:19]]
    history = pcr.ok("history", "alp:1").stdout.splitlines()
    assert history[0].split()[:3] == ["IMAGE", "CREATED", "CREATED"] and "pycontain import" in history[1]
    assert_pycontain_error(pcr("tag", "nosuch:1", "x:1"))
    assert_pycontain_error(pcr("tag", "alp:1", "Bad::Name"))


def test_rmi_untags_first_and_deletes_with_the_last_tag(pcr: Pycontain) -> None:
    image_id = pcr.ok("import", ALPINE_TARBALL, "alp:1").stdout.strip()
    pcr.ok("tag", "alp:1", "alp:2")
    assert_pycontain_error(pcr("rmi", image_id[7:19]))  # several tags: needs -f
    assert pcr.ok("rmi", "alp:1").stdout.strip() == "Untagged: alp:1"
    assert len(layer_dirs(pcr)) == 1
    out = pcr.ok("rmi", "alp:2").stdout
    assert "Untagged: alp:2" in out and f"Deleted: {image_id}" in out
    assert layer_dirs(pcr) == [] and pcr.ok("images", "-q").stdout == ""
    assert_pycontain_error(pcr("rmi", "alp:2"))


def test_rmi_refuses_an_image_a_container_uses_unless_forced(pcr: Pycontain) -> None:
    pcr.ok("import", ALPINE_TARBALL, "alp:1")
    pcr.ok("create", "--name", "user", "alp:1", "true")
    res = pcr("rmi", "alp:1")
    assert_pycontain_error(res)
    assert "user" in res.stderr
    pcr.ok("rmi", "-f", "alp:1")
    assert len(layer_dirs(pcr)) == 1  # the container's root filesystem still needs the layer
    pcr.ok("start", "user")
    assert pcr.ok("wait", "user").stdout.strip() == "0"
    pcr.ok("rm", "user")
    res = pcr("image", "prune")  # no terminal to ask (Docker asks): refused, nothing removed
    assert res.returncode == 125 and "add -f" in res.stderr and layer_dirs(pcr), res.stderr
    pcr.ok("image", "prune", "-f")
    assert layer_dirs(pcr) == []


def test_shared_layers_are_kept_until_no_image_uses_them(pcr: Pycontain) -> None:
    pcr.ok("import", ALPINE_TARBALL, "one")
    pcr.ok("import", "--change", 'CMD ["sh"]', ALPINE_TARBALL, "two")  # same layer, other config
    assert len(layer_dirs(pcr)) == 1
    pcr.ok("rmi", "one")
    assert len(layer_dirs(pcr)) == 1
    assert pcr.ok("run", "--rm", "two", "cat", "/etc/alpine-release").stdout == "3.20.3\n"
    pcr.ok("rmi", "two")
    assert layer_dirs(pcr) == []


def test_image_prune_removes_untagged_images(pcr: Pycontain) -> None:
    first = pcr.ok("import", ALPINE_TARBALL, "app").stdout.strip()
    second = pcr.ok("import", "--change", 'CMD ["sh"]', ALPINE_TARBALL, "app").stdout.strip()
    assert first != second
    rows = pcr.ok("images").stdout.splitlines()[1:]
    assert any(r.split()[:2] == ["<none>", "<none>"] for r in rows)
    out = pcr.ok("image", "prune", "-f").stdout
    assert f"Deleted: {first}" in out and second not in out
    assert pcr.ok("images", "-q").stdout.split() == [second[7:19]]
    pcr.ok("image", "prune", "-a", "-f")
    assert pcr.ok("images", "-q").stdout == "" and layer_dirs(pcr) == []


def test_save_is_readable_by_skopeo_and_load_reads_what_skopeo_writes(pcr: Pycontain, registry: LocalRegistry,
                                                                       tmp_path: Path) -> None:
    image = f"{registry.host}/library/alpine:3.20"
    pcr.ok("pull", image)
    archive = tmp_path / "saved.tar"
    pcr.ok("save", "-o", archive, image)
    skopeo("copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'oci'}:x")
    index = json.loads((tmp_path / "oci" / "index.json").read_text())
    assert len(index["manifests"]) == 1
    # skopeo writes its own docker-archive (from the OCI copy); pycontain loads it into a fresh store.
    written = tmp_path / "skopeo.tar"
    skopeo("copy", "--additional-tag", "roundtrip/alpine:rt", f"oci:{tmp_path / 'oci'}:x",
           f"docker-archive:{written}")
    other = Pycontain(tmp_path / "other-root")
    out = other.ok("load", "-i", written).stdout
    assert "roundtrip/alpine:rt" in out
    assert other.ok("run", "--rm", "roundtrip/alpine:rt", "cat", "/etc/alpine-release").stdout == "3.20.3\n"
    # and what pycontain saved loads back too, from stdin
    third = Pycontain(tmp_path / "third-root")
    with open(archive, "rb") as f:
        res = subprocess.run(third.argv("load"), stdin=f, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert third.ok("run", "--rm", image, "cat", "/etc/alpine-release").stdout == "3.20.3\n"


def test_load_refuses_a_damaged_archive(pcr: Pycontain, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    assert_pycontain_error(pcr("load", "-i", junk))
    assert_pycontain_error(pcr("load", "-i", tmp_path / "missing.tar"))


def test_push_is_readable_by_skopeo(pcr: Pycontain, fresh_registry: LocalRegistry) -> None:
    pcr.ok("import", "--change", 'CMD ["sh"]', ALPINE_TARBALL, f"{fresh_registry.host}/mine/alpine:pushed")
    out = pcr.ok("push", f"{fresh_registry.host}/mine/alpine:pushed").stdout.strip()
    assert out.startswith(f"{fresh_registry.host}/mine/alpine@sha256:")
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{fresh_registry.host}/mine/alpine:pushed"))
    assert info["Digest"] == out.split("@", 1)[1]
    config = json.loads(skopeo("inspect", "--config", "--tls-verify=false",
                               f"docker://{fresh_registry.host}/mine/alpine:pushed"))
    assert config["config"]["Cmd"] == ["sh"]
    # pushing again uploads nothing new
    again = pcr.ok("push", f"{fresh_registry.host}/mine/alpine:pushed")
    assert "Layer already exists" in again.stderr
    # and a fresh store can pull what was pushed
    other = Pycontain(pcr.root.parent / "puller")
    other.ok("pull", f"{fresh_registry.host}/mine/alpine:pushed")
    assert other.ok("run", "--rm", f"{fresh_registry.host}/mine/alpine:pushed", "cat",
                    "/etc/alpine-release").stdout == "3.20.3\n"
