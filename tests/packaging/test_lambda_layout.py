"""Every handler imports as Lambda would load it: no Docker, no `sam build` needed.

Each function is laid out like the Lambda runtime sees it: its CodeUri contents in
``/var/task``, the layer (``shared/`` plus the packages of ``shared/requirements.txt``) under
``/opt/python``, and besides them only what the python3.12 runtime ships (the standard library,
boto3 and its dependencies). Then a clean interpreter (``-I -S``: no site-packages, no user
paths, no PYTHONPATH) imports the handler named in template.yaml. A module that exists on a
developer's machine but not in the deployed package fails here.

Each handler is imported twice: as outside Lambda (tracing off: the X-Ray SDK is not even
imported) and as in Lambda (``LAMBDA_TASK_ROOT`` set: tracing on, the X-Ray SDK loaded from the
layer, botocore still off the import path and patched once the DynamoDB client is created).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from local import cfn
from local.layer import RUNTIME_PACKAGES, lay_out

ROOT = Path(__file__).resolve().parents[2]


def _functions():
    template = cfn.load_template(ROOT / "template.yaml")
    return [pytest.param(function, id=function.logical_id) for function in cfn.functions(template, "table")]


@pytest.fixture(scope="module")
def opt_python(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return lay_out(tmp_path_factory.mktemp("lambda"))


_TRACING_OFF = """
assert 'aws_xray_sdk.core' not in sys.modules, 'tracing is off: the X-Ray SDK stays unimported'
"""
_TRACING_ON = """
from ai_credits.observability import tracer
assert not tracer.disabled and 'aws_xray_sdk.core' in sys.modules, 'tracing is on in Lambda'
assert 'botocore.client' not in sys.modules, 'botocore is imported by the first request, not at import'
import gc
assert gc.get_freeze_count(), 'in Lambda the init phase ends with ai_credits.coldstart.init_done()'
import boto3, botocore.client
boto3.client('dynamodb')
assert getattr(botocore.client, '_xray_enabled', False), 'botocore is patched for X-Ray'
"""


@pytest.mark.parametrize("tracing", ["tracing off", "tracing on"])
@pytest.mark.parametrize("function", _functions())
def test_the_handler_imports_from_its_deployed_layout(function, tracing, opt_python, tmp_path: Path):
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
    ) + (_TRACING_ON if tracing == "tracing on" else _TRACING_OFF)
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "LANG": "C.UTF-8",
        "AWS_DEFAULT_REGION": "us-east-1",
        **{name: value for name, value in function.environment.items()},
    }
    if tracing == "tracing on":  # what the Lambda runtime sets
        environment |= {"LAMBDA_TASK_ROOT": str(task), "AWS_LAMBDA_FUNCTION_NAME": function.logical_id}
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], cwd=task, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, f"{function.logical_id} does not import as deployed:\n{result.stderr}"


def test_the_layer_holds_none_of_the_runtimes_packages(opt_python):
    """aws-xray-sdk depends on botocore: installed with its dependencies, the layer would carry a
    second botocore in front of the runtime's, one the runtime's boto3 was not released with."""
    layer, _ = opt_python
    present = sorted(name for name in RUNTIME_PACKAGES if (layer / name).exists())
    assert present == [], f"the layer carries {present}: install shared/requirements.txt with --no-deps"


def test_every_function_folder_is_in_the_template():
    template = cfn.load_template(ROOT / "template.yaml")
    declared = {Path(function.code_uri).name for function in cfn.functions(template, "table")}
    present = {path.name for path in (ROOT / "functions").iterdir() if (path / "app.py").exists()}
    assert declared == present
