"""deploy/containers: the Dockerfiles follow the rules a linter (hadolint) would hold them to.

No image is built here (that needs the base images from a registry); the files are parsed with
dockerfile-parse and checked instruction by instruction.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).parents[2]
DOCKERFILES = sorted((ROOT / "deploy" / "containers").glob("Dockerfile.*"))


def _instructions(path: Path) -> list[dict[str, str]]:
    with path.open("rb") as handle:
        parser = DockerfileParser(fileobj=handle)
        return list(parser.structure)


def test_there_is_one_for_jetson_and_one_for_x86() -> None:
    assert {p.suffix for p in DOCKERFILES} == {".jetson", ".x86"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_rules(path: Path) -> None:
    instructions = _instructions(path)
    kinds = [i["instruction"] for i in instructions]
    for base in (i["value"] for i in instructions if i["instruction"] == "FROM"):
        image = base.split()[0]
        assert ":" in image and not image.endswith(":latest"), f"{path.name}: pin {image}"  # DL3006/DL3007
    last_from = max(n for n, kind in enumerate(kinds) if kind == "FROM")
    users = [i["value"] for i in instructions[last_from:] if i["instruction"] == "USER"]
    assert users and users[-1] not in {"root", "0"}, f"{path.name}: the final stage must not run as root"
    assert "HEALTHCHECK" in kinds
    for entry in (i["value"] for i in instructions if i["instruction"] in {"ENTRYPOINT", "CMD"}):
        if entry.startswith("CMD"):  # HEALTHCHECK's CMD, parsed as part of its value
            continue
        json.loads(entry)  # exec form: signals reach the daemon, not a shell (DL3025)
    for run in (i["value"] for i in instructions if i["instruction"] == "RUN"):
        if "apt-get install" in run:
            assert "--no-install-recommends" in run and "rm -rf /var/lib/apt/lists" in run  # DL3015, DL3009
        if "pip install" in run:
            assert "--no-cache-dir" in run  # DL3042
        assert not re.search(r"\bsudo\b", run)  # DL3004
    assert not any(i["instruction"] == "ADD" for i in instructions), "COPY, not ADD (DL3020)"
    for copy in (i["value"] for i in instructions if i["instruction"] == "COPY"):
        if copy.startswith("--from"):
            continue
        for source in copy.split()[:-1]:
            assert (ROOT / source).exists(), f"{path.name}: COPY {source} is not in the repository"
