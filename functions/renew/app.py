"""Scheduler: renew the licenses whose term has ended (EventBridge Scheduler, hourly).

Events: the scheduled one (``{"time": "<scheduled time>", ...}``: "now" is its ``time``), or
``{"license_id": "..."}`` (optionally with ``time``) to renew one license. The result lists
what was renewed, expired, not due and what failed; a failure of one license does not stop
the others, and any failure also makes the invocation fail loudly in the logs and metrics.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ai_credits import services
from ai_credits.api import now as current_time
from ai_credits.clock import format_timestamp, parse_timestamp
from ai_credits.observability import logger, metrics


def _now_of(event: dict[str, Any]) -> str:
    time = event.get("time")
    return format_timestamp(parse_timestamp(time)) if isinstance(time, str) and time else current_time()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    now = _now_of(event)
    license_id = event.get("license_id")
    named = [license_id] if isinstance(license_id, str) and license_id else None
    report = services.renew_due(now, named, wall_now=current_time())
    metrics.add_metric(name="LicensesRenewed", unit=MetricUnit.Count, value=len(report.renewed))
    metrics.add_metric(name="LicensesExpired", unit=MetricUnit.Count, value=len(report.expired))
    metrics.add_metric(name="RenewalFailures", unit=MetricUnit.Count, value=len(report.failed))
    result = report.as_dict()
    if report.failed:
        logger.error("renewal failures", extra={"failed": report.failed})
    logger.info("renewal run", extra={key: value for key, value in result.items() if key != "failed"})
    return result
