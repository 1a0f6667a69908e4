"""The README as a newcomer uses it: short enough to read, every ``make`` target it names exists and
is listed by ``make help``, and its walk-through, run as written with bash and curl, does what it
says against the local gateway on DynamoDB Local."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from local import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
#: Two screens of a terminal or an editor.
MAX_LINES = 120
#: The address the walk-through's commands name (``make run``'s default).
RUN_ADDRESS = "http://127.0.0.1:3000"


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.MULTILINE | re.DOTALL)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def _shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def test_the_readme_fits_in_two_screens() -> None:
    assert len(README.splitlines()) <= MAX_LINES


def _make_help() -> str:
    return subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout


def test_every_make_target_the_readme_names_exists_and_is_in_make_help() -> None:
    named = set(re.findall(r"`make ([a-z][a-z0-9-]*)", README)) | {
        target
        for block in _shell_blocks(README)
        for target in re.findall(r"^make ([a-z][a-z0-9-]*)", block, re.M)
    }
    assert {"run", "test", "unit", "e2e"} <= named, named
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    listed = set(re.findall(r"^make ([a-z][a-z0-9-]*)", _make_help(), re.MULTILINE))
    for target in sorted(named):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"no rule for make {target}"
        assert target in listed or target == "help", f"make help does not list make {target}"


def _walk_through_script(base_url: str) -> str:
    (block,) = _shell_blocks(_section("Walk-through"))
    assert RUN_ADDRESS in block, "the walk-through names make run's address"
    return "set -euo pipefail\n" + block.replace(RUN_ADDRESS, base_url)


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("curl") is None, reason="the walk-through is curl commands")
def test_the_walk_through_runs_as_written(gateway: str) -> None:
    """Each command of the walk-through, run by bash; each answer is JSON and tells what the README
    says. Run twice: provisioning updates, activating again rotates the token, the consume is a
    replay, so the balance is still 995."""
    for run in (1, 2):
        done = subprocess.run(
            ["bash", "-c", _walk_through_script(gateway)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        assert done.returncode == 0, done.stderr
        # One answer per line (the README's curls end each with a newline), each JSON.
        provisioned, consumed, balance = (json.loads(line) for line in done.stdout.splitlines())
        assert provisioned["license_id"] == "lic-readme"
        assert provisioned["credits_total"] == 1000
        assert "license_key" not in provisioned
        assert (consumed["consumed"], consumed["remaining"], consumed["replayed"]) == (5, 995, run == 2)
        assert balance["site"]["site"] == "example.com"
        assert (balance["site"]["allocated"], balance["site"]["remaining"]) == (1000, 995)
