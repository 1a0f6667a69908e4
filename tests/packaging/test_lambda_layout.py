"""Every handler imports as Lambda would load it: no Docker, no `sam build` needed.

Each function is laid out like the Lambda runtime sees it: its CodeUri contents in
``/var/task``, the layer (``shared/`` plus the packages of ``shared/requirements.txt``) under
``/opt/python``, and besides them only what the python3.12 runtime ships (the standard library,
boto3 and its dependencies). Then a clean interpreter (``-I -S``: no site-packages, no user
paths, no PYTHONPATH) imports the handler named in template.yaml. A module that exists on a
developer's machine but not in the deployed package fails here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from local import cfn

ROOT = Path(__file__).resolve().parents[2]
LAYER_CACHE = ROOT / ".local" / "layer-packages"
# What the Lambda python runtime provides besides the standard library.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")


def _layer_packages() -> Path:
    """The layer's third-party packages, installed once per requirements file (cached)."""
    requirements = ROOT / "shared" / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    target = LAYER_CACHE / digest
    if not (target / ".complete").exists():
        staging = LAYER_CACHE / f"{digest}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-compile", "--target", str(staging), "-r", str(requirements)],
            check=True,
        )  # fmt: skip
        (staging / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def _link_runtime(runtime: Path) -> None:
    runtime.mkdir()
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, f"{name} is needed to build the runtime copy"
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (runtime / source.name).symlink_to(source)


def _functions():
    template = cfn.load_template(ROOT / "template.yaml")
    return [pytest.param(function, id=function.logical_id) for function in cfn.functions(template, "table")]


@pytest.fixture(scope="module")
def opt_python(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lambda")
    layer = root / "opt" / "python"
    shutil.copytree(_layer_packages(), layer, ignore=shutil.ignore_patterns(".complete"))
    shutil.copytree(ROOT / "shared", layer, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    runtime = root / "runtime"
    _link_runtime(runtime)
    return layer, runtime


@pytest.mark.parametrize("function", _functions())
def test_the_handler_imports_from_its_deployed_layout(function, opt_python, tmp_path: Path):
    layer, runtime = opt_python
    task = tmp_path / "task"
    shutil.copytree(ROOT / function.code_uri, task, ignore=shutil.ignore_patterns("__pycache__"))
    module, _, attribute = function.handler.rpartition(".")
    script = (
        "import sys\n"
        f"sys.path[:0] = [{str(task)!r}, {str(layer)!r}, {str(runtime)!r}]\n"
        f"import {module} as handler_module\n"
        f"assert callable(handler_module.{attribute}), 'handler is not callable'\n"
        "leaked = [name for name in sys.modules if name.split('.')[0] in ('local', 'tests', 'moto', 'pytest')]\n"
        "assert not leaked, leaked\n"
    )
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "LANG": "C.UTF-8",
        "AWS_DEFAULT_REGION": "us-east-1",
        **{name: value for name, value in function.environment.items()},
    }
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], cwd=task, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, f"{function.logical_id} does not import as deployed:\n{result.stderr}"


def test_every_function_folder_is_in_the_template():
    template = cfn.load_template(ROOT / "template.yaml")
    declared = {Path(function.code_uri).name for function in cfn.functions(template, "table")}
    present = {path.name for path in (ROOT / "functions").iterdir() if (path / "app.py").exists()}
    assert declared == present
