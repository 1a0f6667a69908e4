"""Scheduler: renew the licenses whose term has ended (EventBridge Scheduler, hourly).

Events: the scheduled one (``{"time": "<scheduled time>", ...}``: "now" is its ``time``), or
``{"license_id": "..."}`` (optionally with ``time``) to renew one license. The result lists
what was renewed, expired, not due and what failed; a failure of one license does not stop
the others, and any failure also makes the invocation fail loudly in the logs and metrics
(an error line and ``RenewalFailures`` > 0, which template.yaml's ``RenewalFailuresAlarm``
watches). An invocation that raises (the table unreachable, a time-out) is retried by Lambda and
then lands in the renewal dead-letter queue, as does a schedule that could not invoke it.
The correlation id is the scheduled event's ``id`` (the scheduler's execution id).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ai_credits.api import now as current_time
from ai_credits.api import scheduled_now
from ai_credits.coldstart import init_done
from ai_credits.observability import (
    LICENSES_EXPIRED,
    LICENSES_RENEWED,
    RENEWAL_FAILURES,
    logger,
    metrics,
    tracer,
)
from ai_credits.services import renewal


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    now = scheduled_now(event)
    license_id = event.get("license_id")
    named = [license_id] if isinstance(license_id, str) and license_id else None
    report = renewal.renew_due(now, named, wall_now=current_time())
    metrics.add_metric(name=LICENSES_RENEWED, unit=MetricUnit.Count, value=len(report.renewed))
    metrics.add_metric(name=LICENSES_EXPIRED, unit=MetricUnit.Count, value=len(report.expired))
    metrics.add_metric(name=RENEWAL_FAILURES, unit=MetricUnit.Count, value=len(report.failed))
    result = report.as_dict()
    if report.failed:
        logger.error("renewal failures", extra={"failed": report.failed})
    logger.info("renewal run", extra={key: value for key, value in result.items() if key != "failed"})
    return result


init_done()  # last: see ai_credits.coldstart
