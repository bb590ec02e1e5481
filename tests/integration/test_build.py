"""`pycontain build`: Dockerfiles into images, the cache, progress, failures and what they leave.

Each test builds FROM the built-in busybox image (the `pc` fixture imports it) with its own --root.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import Pycontain, describe

pytestmark = pytest.mark.integration


def write(ctx: Path, files: dict[str, str]) -> Path:
    ctx.mkdir(exist_ok=True)
    for name, text in files.items():
        path = ctx / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return ctx


def progress(pc: Pycontain, ctx: Path, *flags: str) -> tuple[str, str]:
    """(image id, the progress lines) of one build: -q is not used, so the id comes from --iidfile."""
    iid = ctx.parent / f"iid-{time.monotonic_ns()}"
    res = pc.ok("build", "--network", "none", "--iidfile", str(iid), *flags, str(ctx))
    return iid.read_text().strip(), res.stderr


DOCKERFILE = """\
FROM busybox
ARG GREETING=hello
ENV APP=/app
WORKDIR $APP
COPY a.txt ./
RUN echo "$GREETING from run" > made.txt && rm /bin/true
COPY b.txt sub/
LABEL org.example.stage=test
EXPOSE 8080/tcp
USER 1000:1000
CMD ["cat", "/app/made.txt"]
"""


def test_build_runs_and_the_image_has_every_step(pc: Pycontain, tmp_path: Path, no_leaks: None) -> None:
    ctx = write(tmp_path / "ctx", {"Dockerfile": DOCKERFILE, "a.txt": "A\n", "b.txt": "B\n"})
    iid, out = progress(pc, ctx, "-t", "hello:v0.1")
    assert iid.startswith("sha256:") and len(iid) == 71
    assert "[1/11] FROM" in out and "[6/11] RUN echo" in out, out
    assert pc.ok("run", "--rm", "hello:v0.1").stdout == "hello from run\n"
    res = pc.ok("run", "--rm", "--user", "0", "hello:v0.1", "sh", "-c",
                "cat /app/a.txt /app/sub/b.txt; pwd; test -e /bin/true && echo present || echo gone; id -u")
    assert res.stdout == "A\nB\n/app\ngone\n0\n", res.stdout
    cfg = pc.inspect("hello:v0.1")
    config = cfg.get("Config") or cfg.get("config", {}).get("config") or {}
    text = json.dumps(cfg)
    assert "org.example.stage" in text and "8080/tcp" in text and "1000:1000" in text, text
    assert "APP=/app" in text
    del config
    hist = pc.ok("history", "--no-trunc", "hello:v0.1").stdout
    for step in ("COPY a.txt ./", "RUN |1 GREETING=hello /bin/sh -c echo", "EXPOSE 8080/tcp", "WORKDIR /app"):
        assert step in hist, hist


def test_unchanged_rebuild_is_cached_and_gives_the_same_id(pc: Pycontain, tmp_path: Path) -> None:
    ctx = write(tmp_path / "ctx", {"Dockerfile": DOCKERFILE, "a.txt": "A\n", "b.txt": "B\n"})
    first, out1 = progress(pc, ctx)
    assert "CACHED" not in out1
    second, out2 = progress(pc, ctx)
    assert second == first
    # Every step that makes a layer says CACHED; nothing ran (no indented output, no timings).
    for line in ("COPY a.txt ./  CACHED", "RUN echo", "COPY b.txt sub/  CACHED"):
        assert line in out2, out2
    assert "done in" not in out2, out2
    # mtime is not content: touching a source keeps the cache.
    os.utime(ctx / "a.txt", (1, 1))
    third, out3 = progress(pc, ctx)
    assert third == first and "done in" not in out3, out3


def test_a_changed_file_invalidates_from_its_copy(pc: Pycontain, tmp_path: Path) -> None:
    ctx = write(tmp_path / "ctx", {"Dockerfile": DOCKERFILE, "a.txt": "A\n", "b.txt": "B\n"})
    first, _ = progress(pc, ctx)
    (ctx / "b.txt").write_text("B2\n")
    second, out = progress(pc, ctx)
    assert second != first
    assert "COPY a.txt ./  CACHED" in out and "RUN echo" in out and "COPY b.txt sub/  CACHED" not in out, out
    lines = [ln for ln in out.splitlines() if "RUN echo" in ln]
    assert lines and lines[0].endswith("CACHED"), out  # the RUN before the changed COPY stays cached
    (ctx / "a.txt").write_text("A2\n")
    _, out = progress(pc, ctx)
    assert "COPY a.txt ./  CACHED" not in out and not [ln for ln in out.splitlines()
                                                        if "RUN echo" in ln][0].endswith("CACHED"), out
    # A chmod changes the key too (mode is part of a source's checksum).
    os.chmod(ctx / "a.txt", 0o600)
    _, out = progress(pc, ctx)
    assert "COPY a.txt ./  CACHED" not in out, out


def test_no_cache_and_build_args(pc: Pycontain, tmp_path: Path) -> None:
    ctx = write(tmp_path / "ctx", {"Dockerfile": DOCKERFILE, "a.txt": "A\n", "b.txt": "B\n"})
    progress(pc, ctx, "-t", "x:1")
    _, out = progress(pc, ctx, "--no-cache")
    assert "CACHED" not in out, out
    _, out = progress(pc, ctx, "--build-arg", "GREETING=hi", "-t", "x:2")
    run_line = [ln for ln in out.splitlines() if "RUN echo" in ln][0]
    assert not run_line.endswith("CACHED") and "COPY a.txt ./  CACHED" in out, out
    assert pc.ok("run", "--rm", "x:2").stdout == "hi from run\n"


def test_multi_stage_target_and_skipped_stages(pc: Pycontain, tmp_path: Path) -> None:
    ctx = write(tmp_path / "ctx", {"Dockerfile": """\
FROM busybox AS builder
RUN mkdir /out && echo built > /out/artifact
FROM busybox AS unused
RUN echo THIS-STAGE-RUNS && false
FROM busybox
COPY --from=builder /out/artifact /artifact
CMD ["cat", "/artifact"]
"""})
    iid, out = progress(pc, ctx, "-t", "ms:1")
    assert "THIS-STAGE-RUNS" not in out, out
    assert pc.ok("run", "--rm", "ms:1").stdout == "built\n"
    _, out = progress(pc, ctx, "--target", "builder", "-t", "ms:builder")
    assert pc.ok("run", "--rm", "ms:builder", "cat", "/out/artifact").stdout == "built\n"
    res = pc("build", "--network", "none", "--target", "nope", str(ctx))
    assert res.returncode == 125 and "nope" in res.stderr and len(res.stderr.strip().splitlines()) == 1, describe(res)


def test_failing_run_reports_and_leaves_nothing(pc: Pycontain, tmp_path: Path,
                                                assert_leak_free: Callable[[], None]) -> None:
    ctx = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo about-to-fail; exit 3\n"})
    store = pc.root / "storage" / "images"
    before = sorted(p.name for p in (store / "layers").iterdir())
    res = pc("build", "--network", "none", str(ctx))
    assert res.returncode == 3, describe(res)
    assert "about-to-fail" in res.stderr and "exited with code 3" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert sorted(p.name for p in (store / "layers").iterdir()) == before
    assert not list((pc.root / "storage" / "build").iterdir())
    assert pc.ok("ps", "-a", "-q").stdout == ""
    # -q keeps quiet until something fails: then the step's output is shown.
    res = pc("build", "--network", "none", "-q", str(ctx))
    assert res.returncode == 3 and "about-to-fail" in res.stderr and res.stdout == "", describe(res)
    assert_leak_free()


@pytest.mark.parametrize("dockerfile, message", [
    ("RUN true\n", "FROM"),
    ("FROM busybox\nFROBNICATE x\n", "FROBNICATE"),
    ("FROM busybox\nCOPY missing.txt /\n", "missing.txt"),
    ("FROM busybox\nCOPY ../outside /\n", "outside"),
    ("FROM no-such-image:1\n", "no-such-image"),
    ("FROM --platform=linux/arm64 busybox\n", "platform"),
    ("FROM busybox\nRUN /no/such/program\n", ""),
    ("FROM busybox\nSHELL /bin/bash -c\n", "JSON"),
])
def test_bad_dockerfiles_get_one_line(pc: Pycontain, tmp_path: Path, dockerfile: str, message: str) -> None:
    ctx = write(tmp_path / "ctx", {"Dockerfile": dockerfile})
    (tmp_path / "outside").write_text("secret")
    res = pc("build", "--network", "none", str(ctx))
    assert res.returncode != 0 and "Traceback" not in res.stderr, describe(res)
    if message:
        assert res.returncode == 125, describe(res)
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("pycontain:")]
        assert len(errors) == 1 and message in errors[0], describe(res)
    assert not list((pc.root / "storage" / "build").iterdir())


def test_bad_command_lines(pc: Pycontain, tmp_path: Path) -> None:
    for args in (["build"], ["build", "a", "b"], ["build", "--network", "weird", "."],
                 ["build", "--progress", "fancy", "."], ["build", str(tmp_path / "nope")], ["builder", "frob"]):
        res = pc(*args)
        assert res.returncode == 125 and "Traceback" not in res.stderr, describe(res)
        assert len(res.stderr.strip().splitlines()) == 1, describe(res)


def test_dockerignore_and_context_from_stdin(pc: Pycontain, tmp_path: Path) -> None:
    ctx = write(tmp_path / "ctx", {
        "Dockerfile": "FROM busybox\nCOPY . /ctx/\n",
        ".dockerignore": "secret*\n**/*.log\n!keep.log\n",
        "secret.txt": "no", "app.txt": "yes", "d/x.log": "no", "keep.log": "yes",
    })
    progress(pc, ctx, "-t", "ign:1")
    listing = pc.ok("run", "--rm", "ign:1", "find", "/ctx", "-type", "f").stdout.split()
    assert sorted(listing) == ["/ctx/.dockerignore", "/ctx/Dockerfile", "/ctx/app.txt", "/ctx/keep.log"], listing
    tar = tmp_path / "ctx.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(ctx, arcname=".")
    with open(tar, "rb") as f:
        res = subprocess.run(pc.argv("build", "--network", "none", "-q", "-t", "ign:2", "-"), stdin=f,
                             capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, describe(res)
    assert pc.ok("run", "--rm", "ign:2", "cat", "/ctx/app.txt").stdout == "yes"
    res = subprocess.run(pc.argv("build", "--network", "none", "-q", "-t", "ign:3", "-f", "-", str(ctx)),
                         input="FROM busybox\nCMD [\"echo\", \"from stdin\"]\n", capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, describe(res)
    assert pc.ok("run", "--rm", "ign:3").stdout == "from stdin\n"


def test_entrypoint_cmd_onbuild_heredoc_and_config(pc: Pycontain, tmp_path: Path) -> None:
    ctx = write(tmp_path / "base", {"Dockerfile": """\
FROM busybox
CMD ["echo", "base-cmd"]
ONBUILD RUN echo triggered > /onbuild.txt
HEALTHCHECK --interval=5s --retries=2 CMD true
STOPSIGNAL SIGINT
VOLUME /data
"""})
    progress(pc, ctx, "-t", "base:1")
    ctx2 = write(tmp_path / "child", {"Dockerfile": """\
FROM base:1
ENTRYPOINT ["echo", "entry"]
RUN <<EOF
echo one > /heredoc.txt
echo two >> /heredoc.txt
EOF
COPY <<EOT /greeting.txt
hello $HOSTNAME_NOT_SET-x
EOT
"""})
    progress(pc, ctx2, "-t", "child:1")
    # ENTRYPOINT drops the inherited CMD.
    assert pc.ok("run", "--rm", "child:1").stdout == "entry\n"
    out = pc.ok("run", "--rm", "--entrypoint", "cat", "child:1", "/onbuild.txt", "/heredoc.txt",
                "/greeting.txt").stdout
    assert out == "triggered\none\ntwo\nhello -x\n", out
    text = json.dumps(pc.inspect("base:1"))
    assert "Healthcheck" in text and "5000000000" in text and "SIGINT" in text and "/data" in text, text
    assert "OnBuild" not in json.dumps(pc.inspect("child:1")).replace('"OnBuild": null', "")


def test_builder_prune_and_image_prune(pc: Pycontain, tmp_path: Path) -> None:
    ctx = write(tmp_path / "ctx", {"Dockerfile": DOCKERFILE, "a.txt": "A\n", "b.txt": "B\n"})
    first, _ = progress(pc, ctx, "-t", "p:1")
    (ctx / "b.txt").write_text("B2\n")
    progress(pc, ctx, "-t", "p:1")  # the first image is untagged now: prune removes it, not its cache
    (ctx / "b.txt").write_text("B\n")
    assert "sha256:" in pc.ok("image", "prune", "-f").stdout
    second, out = progress(pc, ctx, "-t", "p:1")
    assert second == first and "done in" not in out, out
    pc.ok("rmi", "p:1")
    pc.ok("builder", "prune")
    _, out = progress(pc, ctx, "-t", "p:1")
    assert "done in" in out, out  # the cache went with the image


def test_sigkill_mid_build_then_gc(pc: Pycontain, tmp_path: Path, assert_leak_free: Callable[[], None]) -> None:
    ctx = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo started; sleep 60\n"})
    p = pc.popen("build", "--network", "none", str(ctx))
    assert p.stderr is not None
    deadline = time.monotonic() + 30
    seen = ""
    while "started" not in seen and time.monotonic() < deadline:
        seen += p.stderr.readline()
    assert "started" in seen, seen
    p.send_signal(signal.SIGKILL)
    p.wait()
    res = pc.ok("gc")
    assert "killed build" in res.stdout, res.stdout
    assert not list((pc.root / "storage" / "build").iterdir())
    assert_leak_free()
