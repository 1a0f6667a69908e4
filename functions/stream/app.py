"""The table's change stream: derive usage rollups, statement entries and events (API.md,
"Usage and events"), off the request path.

Invoked by the DynamoDB event source mapping (template.yaml: batches of up to 100 records,
partial batch responses, bisect on error, an on-failure queue). The answer names the first record
whose derived data may be incomplete (``batchItemFailures``); Lambda delivers it and every later
record again, and ``services/stream.py`` applies each of them exactly once. An exception (a bug,
a time-out) makes Lambda retry the whole batch, with the same result. Metrics: ``StreamRecords``,
``StatementEntries``, ``UsageRollupUpdates`` and ``EventsPublished``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ai_credits.coldstart import init_done
from ai_credits.observability import (
    EVENTS_PUBLISHED,
    STATEMENT_ENTRIES,
    STREAM_RECORDS,
    USAGE_ROLLUP_UPDATES,
    logger,
    metrics,
    tracer,
)
from ai_credits.services import stream


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = stream.process(event.get("Records", []))
    for name, value in (
        (STREAM_RECORDS, report.records),
        (STATEMENT_ENTRIES, report.entries),
        (USAGE_ROLLUP_UPDATES, report.rollup_updates),
        (EVENTS_PUBLISHED, report.events),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    logger.info(
        "stream batch",
        extra={
            "records": report.records,
            "entries": report.entries,
            "contributions": report.contributions,
            "rollup_updates": report.rollup_updates,
            "events": report.events,
            "events_skipped": report.events_skipped,
            "failed_at": report.failed_at,
            "failed_steps": report.failed_steps,
        },
    )
    return {"batchItemFailures": report.failures()}


init_done()  # last: see ai_credits.coldstart
