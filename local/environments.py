"""Lambda's execution environments, locally: each function's handler loaded as Lambda loads it, and
worker processes that run one invocation at a time each.

A function's ``CodeUri`` folder plays ``/var/task`` and the layer's folder ``/opt/python``; the
template's environment variables are set before any handler is imported, because handlers read
their configuration at import time. :class:`ExecutionEnvironments` is the pool of worker processes
:mod:`local.gateway` invokes the functions in; results and errors come back as Lambda's Python
runtime returns them (JSON with Decimals as numbers, ``Runtime.MarshalError``, the unhandled
exception's error body).
"""

from __future__ import annotations

import decimal
import importlib.util
import json
import logging
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from local import REPO_ROOT
from local.cfn import LOCAL_ACCOUNT_ID, FunctionSpec

__all__ = [
    "DEFAULT_CONCURRENCY",
    "ExecutionEnvironments",
    "FunctionError",
    "GatewayConfigError",
    "LambdaContext",
    "LoadedFunction",
    "MarshalError",
    "lambda_error_payload",
    "load_functions",
]

logger = logging.getLogger(__name__)

#: How many invocations run at once (Lambda's concurrency), each in its own process.
DEFAULT_CONCURRENCY = 4


class GatewayConfigError(RuntimeError):
    """The template's functions cannot be served together in one process (say why, loudly)."""


# --------------------------------------------------------------------------------------------------
# Loading the functions
# --------------------------------------------------------------------------------------------------


@dataclass
class LoadedFunction:
    """A function whose handler module has been imported in this process."""

    spec: FunctionSpec
    handler: Callable[[Any, Any], Any]
    module_name: str
    region: str

    @property
    def name(self) -> str:
        return self.spec.logical_id

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{LOCAL_ACCOUNT_ID}:function:{self.name}"


def _merged_environment(specs: Iterable[FunctionSpec]) -> dict[str, str]:
    """One environment for all functions: they share this process, so they must agree."""
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    for spec in specs:
        for name, value in spec.environment.items():
            if name in merged and merged[name] != value:
                raise GatewayConfigError(
                    f"environment variable {name} is {merged[name]!r} for {owner[name]} but {value!r} for "
                    f"{spec.logical_id}; functions loaded in one process must agree"
                )
            merged[name] = value
            owner.setdefault(name, spec.logical_id)
    return merged


def _layer_paths(specs: Iterable[FunctionSpec], base_dir: Path) -> list[Path]:
    """The folders a Python layer puts on ``sys.path`` (``/opt/python`` in Lambda)."""
    paths: list[Path] = []
    for spec in specs:
        for layer in spec.layers:
            content = (base_dir / layer.content_uri).resolve()
            # With a BuildMethod, `sam build` puts the folder's content under python/; a layer
            # without one is shipped as-is and must already have python/ inside.
            has_build = bool(layer.build_method and layer.build_method.startswith("python"))
            path = content if has_build or not (content / "python").is_dir() else content / "python"
            if path not in paths:
                paths.append(path)
    return paths


def _sibling_modules(code_dir: Path, handler_module: str) -> set[str]:
    top = handler_module.split(".")[0]
    names = {entry.stem for entry in code_dir.glob("*.py")}
    names |= {entry.name for entry in code_dir.iterdir() if (entry / "__init__.py").is_file()}
    return names - {top, "__init__"}


def _load_function(spec: FunctionSpec, base_dir: Path, region: str) -> LoadedFunction:
    code_dir = (base_dir / spec.code_uri).resolve()
    module_path, _, attribute = spec.handler.rpartition(".")
    file = code_dir / (module_path.replace(".", "/") + ".py")
    if not file.is_file():
        file = code_dir / module_path.replace(".", "/") / "__init__.py"
    if not file.is_file():
        raise GatewayConfigError(f"{spec.logical_id}: handler module {module_path!r} not found in {code_dir}")
    # Every function has an app.py: a unique module name keeps them apart in sys.modules (and
    # registering it there lets pydantic/dataclasses resolve the module's annotations).
    module_name = f"lambda_{spec.logical_id}_{module_path.replace('.', '_')}"
    module_spec = importlib.util.spec_from_file_location(module_name, file)
    if module_spec is None or module_spec.loader is None:
        raise GatewayConfigError(f"{spec.logical_id}: cannot load {file}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(code_dir))  # like /var/task: the handler's sibling modules import
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    finally:
        sys.path.remove(str(code_dir))
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise GatewayConfigError(f"{spec.logical_id}: {file} has no callable {attribute!r}")
    return LoadedFunction(spec=spec, handler=handler, module_name=module_name, region=region)


def load_functions(specs: list[FunctionSpec], base_dir: Path = REPO_ROOT) -> dict[str, LoadedFunction]:
    """Import every function's handler, in the environment the template gives it.

    The template's environment variables are set in ``os.environ`` *before* any import (handlers
    read their configuration at import time, as in Lambda). The layer folders go on ``sys.path``.
    """
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
    os.environ.update(_merged_environment(specs))
    for path in reversed(_layer_paths(specs, base_dir)):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    siblings: dict[str, str] = {}
    for spec in specs:
        for name in _sibling_modules((base_dir / spec.code_uri).resolve(), spec.handler.rpartition(".")[0]):
            if name in siblings:
                # In Lambda each function has its own /var/task; here sys.modules is shared, so the
                # second function would silently get the first one's module.
                raise GatewayConfigError(
                    f"module {name!r} exists next to the handlers of both {siblings[name]} and "
                    f"{spec.logical_id}; the local gateway loads all functions in one process"
                )
            siblings[name] = spec.logical_id
    return {spec.logical_id: _load_function(spec, base_dir, region) for spec in specs}


# --------------------------------------------------------------------------------------------------
# Lambda's Python runtime: the context, the result, the error
# --------------------------------------------------------------------------------------------------


class LambdaContext:
    """What the Lambda Python runtime passes as ``context`` (the attributes Powertools reads)."""

    def __init__(self, function: LoadedFunction, request_id: str) -> None:
        self.function_name = function.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function.arn
        self.memory_limit_in_mb = function.spec.memory_size
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{function.name}"
        self.log_stream_name = f"{time.strftime('%Y/%m/%d', time.gmtime())}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + function.spec.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class MarshalError(TypeError):
    """The handler returned something that is not JSON (Lambda's ``Runtime.MarshalError``)."""


def _lambda_json(value: Any) -> str:
    """Serialise a handler result as Lambda's Python runtime does (it turns Decimals into numbers)."""

    def decimal_to_number(obj: Any) -> Any:
        if isinstance(obj, decimal.Decimal):
            return int(obj) if obj == obj.to_integral_value() else float(obj)
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    try:
        return json.dumps(value, default=decimal_to_number)
    except (TypeError, ValueError) as exc:
        raise MarshalError(f"Unable to marshal response: {exc}") from exc


#: The folder of the local stand-ins (this module, :mod:`local.gateway`): their frames are not the
#: function's, so stack traces leave them out.
_LOCAL_DIR = os.path.dirname(__file__)


def lambda_error_payload(exc: BaseException, request_id: str) -> dict[str, Any]:
    """The body Lambda returns for an unhandled exception in a Python function."""
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if os.path.dirname(frame.filename) != _LOCAL_DIR
    ]
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(frames),
    }


# --------------------------------------------------------------------------------------------------
# Execution environments: worker processes, like Lambda's
# --------------------------------------------------------------------------------------------------


class FunctionError(Exception):
    """The handler raised: ``payload`` is Lambda's error body, built in the worker."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(f"{payload.get('errorType')}: {payload.get('errorMessage')}")
        self.payload = payload


_ENVIRONMENT: dict[str, LoadedFunction] = {}


def _start_environment(specs: list[FunctionSpec], base_dir: Path, environ: dict[str, str]) -> None:
    """A worker's cold start: the environment of the gateway, then every handler imported once."""
    os.environ.update(environ)
    _ENVIRONMENT.update(load_functions(specs, base_dir))


def _warm(_: int) -> int:
    return os.getpid()


def _invoke_in_environment(name: str, event: Any, request_id: str) -> tuple[str, Any]:
    """Run one invocation in this worker; the outcome travels back as plain data."""
    function = _ENVIRONMENT[name]
    context = LambdaContext(function, request_id)
    started = time.monotonic()
    try:
        result = function.handler(event, context)
    except Exception as exc:  # reported to the caller as Lambda does, and printed here
        traceback.print_exc()
        return "error", lambda_error_payload(exc, request_id)
    finally:
        elapsed = time.monotonic() - started
        if elapsed > function.spec.timeout:
            logger.warning(
                "%s ran %.1fs, past its Timeout of %ss: Lambda would have stopped it",
                function.name,
                elapsed,
                function.spec.timeout,
            )
    try:
        return "ok", _lambda_json(result)
    except MarshalError as exc:
        return "marshal_error", str(exc)


class ExecutionEnvironments:
    """``concurrency`` worker processes, each importing every handler once (its cold start) and
    running one invocation at a time.

    Lambda runs one invocation at a time per execution environment, each its own process, and
    Powertools keeps per-invocation state in module globals (the resolver's current_event, the
    metric set, the logger's keys). So do we; concurrent requests really reach DynamoDB
    concurrently.
    """

    def __init__(
        self, specs: list[FunctionSpec], base_dir: Path, environ: dict[str, str], concurrency: int
    ) -> None:
        self._pool = ProcessPoolExecutor(
            max_workers=concurrency,
            mp_context=get_context("spawn"),  # never fork a process that runs threads
            initializer=_start_environment,
            initargs=(specs, base_dir, environ),
        )
        self._warming: list[Future[int]] = [self._pool.submit(_warm, index) for index in range(concurrency)]

    def invoke(self, name: str, event: Any, request_id: str) -> Any:
        """Run function ``name`` in a free environment; its result round-tripped through JSON.

        A handler's exception comes back as :class:`FunctionError`, a result that is not JSON as
        :class:`MarshalError`.
        """
        outcome, payload = self._pool.submit(_invoke_in_environment, name, event, request_id).result()
        if outcome == "error":
            raise FunctionError(payload)
        if outcome == "marshal_error":
            raise MarshalError(payload)
        return json.loads(payload)

    def wait_until_warm(self) -> None:
        """Block until every environment has had its cold start."""
        for future in self._warming:
            future.result()

    def shutdown(self) -> None:
        """Stop the workers without waiting for running invocations; queued ones are cancelled."""
        self._pool.shutdown(wait=False, cancel_futures=True)
