"""The Dockerfile parser and compose files, fuzzed like the other untrusted inputs (test_fuzz_*): whatever
the text, the parser ends in pycontain's own one-line error (PycontainError), never another exception."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from fuzz_support import count, damaged, fuzz, one_line
from hypothesis import given
from hypothesis import strategies as st

from pycontain.errors import PycontainError

DOCKERFILE_LINES = [
    "FROM alpine:3.20 AS base", "ARG V=1", "ENV A=b C=\"d e\"", "RUN echo $A && ls /", "COPY --chown=1:2 a /b/",
    "ADD x.tar.gz /opt/", "WORKDIR /app", "USER nobody", 'CMD ["sh", "-c", "echo hi"]', "ENTRYPOINT [\"/e\"]",
    "EXPOSE 80/tcp", "VOLUME /data", "LABEL k=v", "HEALTHCHECK --interval=5s CMD true", "ONBUILD RUN true",
    "SHELL [\"/bin/bash\", \"-c\"]", "RUN <<EOF\necho x\nEOF", "COPY --from=base /a /b", "# comment", "\\",
    "FROM scratch", "STOPSIGNAL SIGINT", "# escape=`", "RUN a \\\n  b",
]


@fuzz(300)
@given(st.lists(st.sampled_from(DOCKERFILE_LINES) | st.text(max_size=30), max_size=8))
def test_dockerfile_parser(lines: list[str]) -> None:
    from pycontain.build import dockerfile

    count("Dockerfile texts")
    try:
        dockerfile.parse("\n".join(lines) + "\n")
    except PycontainError as e:
        one_line(e)


COMPOSE: dict[str, Any] = {
    "name": "vote",
    "services": {
        "web": {"build": {"context": ".", "args": {"A": "1"}}, "ports": ["18090:80"], "depends_on": {
            "api": {"condition": "service_healthy"}}, "networks": ["front", "back"], "environment": ["X=1"]},
        "api": {"image": "alpine", "command": "sh -c 'sleep 1d'", "healthcheck": {
            "test": ["CMD", "true"], "interval": "5s", "retries": 3}, "networks": {"back": {"aliases": ["b"]}}},
        "worker": {"image": "alpine", "deploy": {"replicas": 2, "resources": {"limits": {"memory": "64m"}}},
                   "volumes": ["data:/data", "./x:/x:ro"], "labels": {"k": "v"}},
    },
    "networks": {"front": {}, "back": {"internal": True}},
    "volumes": {"data": {}},
}


@fuzz(300)
@given(st.data())
def test_compose_files(data: st.DataObject) -> None:
    import yaml

    from pycontain.compose import model

    count("compose files")
    doc = data.draw(damaged(copy.deepcopy(COMPOSE)))
    try:
        text = yaml.safe_dump(doc)
    except yaml.YAMLError:
        return
    try:
        model.load_texts([(text, "compose.yaml")], Path("/nonexistent-project"), {})
    except PycontainError as e:
        one_line(e)
