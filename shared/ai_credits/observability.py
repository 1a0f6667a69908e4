"""The one Logger, Metrics and Tracer of every function, and the names of its metrics (STYLE.md habit 6).

Every HTTP handler wears the same decorators, in this order (outermost first)::

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
    def lambda_handler(event, context):
        return app.resolve(event, context)

The correlation id is the HTTP API's ``requestContext.requestId``; the scheduled functions (renew,
sweep_holds) take the scheduled event's ``id`` instead (``correlation_paths.EVENT_BRIDGE``).
``capture_response=False``: a response can hold an activation token, and nothing secret goes to
X-Ray. Nothing here logs a request body or an Authorization header: license keys and tokens never
reach the logs.

Service name and namespace come from ``POWERTOOLS_SERVICE_NAME`` (``ai-credits``) and
``POWERTOOLS_METRICS_NAMESPACE`` (``AICredits/<Stage>``), set in template.yaml. The metrics, in
CloudWatch embedded metric format, each with the one dimension ``service``:

=============================  ======  ===================  ===============================================
metric                         unit    emitted by           value
=============================  ======  ===================  ===============================================
``CreditsConsumed``            Count   ConsumeFunction,     credits charged by a consume or a capture
                                       HoldsFunction        (replays: none)
``InsufficientCreditRefusals`` Count   ConsumeFunction,     1 per ``402 insufficient_credits``
                                       HoldsFunction
``Activations_<environment>``  Count   ActivateFunction     1 per activation answered 201; ``<environment>``
                                                            is ``live``, ``staging`` or ``development``
``AllocationsApplied``         Count   AllocateFunction     1 per successful *Apply*
``LicensesRenewed``            Count   RenewFunction        licenses renewed by a run
``LicensesExpired``            Count   RenewFunction        licenses marked expired by a run
``RenewalFailures``            Count   RenewFunction        licenses whose renewal failed in a run (sent as 0
                                                            too; alarmed by ``RenewalFailuresAlarm``)
``HoldsExpired``               Count   HoldSweeperFunction  open holds past their ``expires_at`` released by a
                                                            sweep (sent as 0 too)
``StreamRecords``              Count   StreamFunction       change records in a batch
``StatementEntries``           Count   StreamFunction       statement entries written by a batch
``UsageRollupUpdates``         Count   StreamFunction       rollup UpdateItem requests of a batch
``EventsPublished``            Count   StreamFunction       events put on the bus (not those already sent)
=============================  ======  ===================  ===============================================

Tracing (X-Ray) is on in AWS Lambda only, as Powertools decides it: off outside Lambda (tests,
``make run``, ``make bench``), under ``sam local`` and with ``POWERTOOLS_TRACE_DISABLED``. When
it is off the tracer gets a provider that does nothing, so the X-Ray SDK is not even imported:
outside Lambda its recorder builds an X-Ray botocore client at import time (about 250 ms per
process). When it is on, botocore is patched the moment it is first imported (the rules
package creates its DynamoDB client on the first request), which keeps botocore off the
cold-start import path.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

# The metric names (see the table above; template.yaml's alarms use the same strings).
CREDITS_CONSUMED = "CreditsConsumed"
INSUFFICIENT_CREDIT_REFUSALS = "InsufficientCreditRefusals"
ACTIVATIONS_PREFIX = "Activations_"
ALLOCATIONS_APPLIED = "AllocationsApplied"
LICENSES_RENEWED = "LicensesRenewed"
LICENSES_EXPIRED = "LicensesExpired"
RENEWAL_FAILURES = "RenewalFailures"
HOLDS_EXPIRED = "HoldsExpired"
STREAM_RECORDS = "StreamRecords"
STATEMENT_ENTRIES = "StatementEntries"
USAGE_ROLLUP_UPDATES = "UsageRollupUpdates"
EVENTS_PUBLISHED = "EventsPublished"

_TRUTHY = frozenset({"1", "true", "t", "yes", "y", "on"})


def tracing_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Powertools' rule: in Lambda (``LAMBDA_TASK_ROOT``), not under ``sam local`` or Chalice,
    and not turned off with ``POWERTOOLS_TRACE_DISABLED``."""
    if environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in _TRUTHY:
        return False
    in_emulator = environ.get("AWS_SAM_LOCAL") or environ.get("AWS_CHALICE_CLI_MODE")
    return bool(environ.get("LAMBDA_TASK_ROOT")) and not in_emulator


class _NoSegment(BaseSegment):
    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        pass


class _NoTracing(BaseProvider):
    """The tracer's provider while tracing is off: records nothing and imports no X-Ray SDK."""

    @contextlib.contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Iterator[BaseSegment]:
        yield _NoSegment()

    @contextlib.asynccontextmanager
    async def in_subsegment_async(self, name: str | None = None, **kwargs: Any) -> AsyncIterator[BaseSegment]:
        yield _NoSegment()

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Sequence[str]) -> None:
        pass

    def patch_all(self) -> None:
        pass


def _create_tracer() -> Tracer:
    if not tracing_enabled():
        return Tracer(disabled=True, auto_patch=False, provider=_NoTracing())
    import wrapt  # the X-Ray SDK's own dependency

    tracer = Tracer(auto_patch=False)
    # boto3's DynamoDB calls become X-Ray subsegments. Patched once botocore.session has been
    # imported (at once if it already is), not now: botocore stays off the handlers' import path.
    # Not on botocore.client itself: its hook runs before the module is bound to ``botocore``.
    wrapt.register_post_import_hook(lambda _module: tracer.patch(["botocore"]), "botocore.session")
    return tracer


logger = Logger()
metrics = Metrics()
tracer = _create_tracer()

# A request that charges nothing (a read, a refusal) has no metric to publish: not worth a warning.
warnings.filterwarnings("ignore", message="No application metrics to publish")
