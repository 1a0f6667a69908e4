"""Scheduler: release the holds still open at their ``expires_at`` (rule 11; EventBridge Scheduler,
every minute, so that their credits are in ``remaining`` again at most 60 seconds later).

Event: the scheduled one (``{"time": "<scheduled time>", ...}``: "now" is its ``time``; without one,
the clock's). The result is ``{"now", "released"}``; ``released`` is also the ``HoldsExpired``
metric (sent as 0 too). A sweep that fails or is skipped loses nothing: the next one, a minute
later, releases every hold due by then, and two sweeps never release a hold twice. The correlation
id is the scheduled event's ``id`` (the scheduler's execution id).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ai_credits.api import scheduled_now
from ai_credits.coldstart import init_done
from ai_credits.observability import HOLDS_EXPIRED, logger, metrics, tracer
from ai_credits.services import holds


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    now = scheduled_now(event)
    released = holds.sweep_expired_holds(now)
    metrics.add_metric(name=HOLDS_EXPIRED, unit=MetricUnit.Count, value=released)
    logger.info("hold sweep", extra={"now": now, "released": released})
    return {"now": now, "released": released}


init_done()  # last: see ai_credits.coldstart
