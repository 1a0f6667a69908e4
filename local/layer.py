"""The Lambda layer's third-party packages, laid out as ``sam build`` lays them (``shared/Makefile``).

``shared/requirements.txt`` is exported from ``uv.lock`` and is complete (every package the layer
needs, pinned), so it is installed with ``--no-deps``: nothing the list leaves out on purpose (the
Lambda runtime's boto3, botocore and their dependencies) can come back as someone's dependency,
for example botocore through aws-xray-sdk. The deployed layer gets arm64 wheels for python3.12;
the copies here are for this machine's interpreter, cached under ``.local/layer-packages/`` per
content of the requirements file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from local import REPO_ROOT

REQUIREMENTS = REPO_ROOT / "shared" / "requirements.txt"
LAYER_CACHE = REPO_ROOT / ".local" / "layer-packages"
#: What the Lambda python runtime provides besides the standard library (never in the layer).
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")
# Part of the cache key: a change of how the packages are installed invalidates old copies.
_INSTALL = ("--no-deps", "--no-compile")


def layer_packages(log: Callable[[str], None] | None = None) -> Path:
    """A folder holding exactly the layer's third-party packages for this interpreter."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + " ".join(_INSTALL).encode()).hexdigest()[:16]
    target = LAYER_CACHE / digest
    if (target / ".complete").exists():
        return target
    if log is not None:
        log(f"installing the layer's packages into {target.relative_to(REPO_ROOT)} (once)")
    staging = LAYER_CACHE / f"{digest}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *_INSTALL,
         "--target", str(staging), "-r", str(REQUIREMENTS)],
        check=True, stdout=sys.stderr,
    )  # fmt: skip
    (staging / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def lay_out(root: Path, log: Callable[[str], None] | None = None) -> tuple[Path, Path]:
    """The deployed layer and the runtime's own packages as Lambda sees them, under ``root``:
    ``opt/python`` (the layer's packages and the ``ai_credits`` package) and ``runtime`` (links to
    this machine's copies of what the Lambda runtime ships). Returns both folders."""
    import importlib.util

    layer = root / "opt" / "python"
    shutil.copytree(layer_packages(log), layer, ignore=shutil.ignore_patterns(".complete"))
    shutil.copytree(
        REPO_ROOT / "shared" / "ai_credits",
        layer / "ai_credits",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    runtime = root / "runtime"
    runtime.mkdir()
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"{name} is needed to lay out the runtime's packages")
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (runtime / source.name).symlink_to(source)
    return layer, runtime
