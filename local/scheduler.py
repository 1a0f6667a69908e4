"""``make run``'s EventBridge Scheduler: fires the template's ``rate()`` schedules on their period.

Every ``Schedule``/``ScheduleV2`` event of ``template.yaml`` whose expression is ``rate(<n> minute[s]
|hour[s]|day[s])`` invokes its function every period, as AWS would (the hold sweeper every minute,
the renewal every hour), first one period after the start. The event is the schedule's ``Input``
with EventBridge Scheduler's context attributes filled in (``<aws.scheduler.scheduled-time>``: the
scheduled time, the run's "now"; ``<aws.scheduler.execution-id>``, ``<aws.scheduler.schedule-arn>``,
``<aws.scheduler.attempt-number>``), like ``events/*-scheduled.json``. ``cron()`` and ``at()``
schedules are not fired (none in the template); ``aws lambda invoke`` runs any function at once.

Each schedule has a thread of its own, so a long renewal never delays a sweep; one schedule's runs
never overlap (a run that outlives its period delays the next, where AWS would run both: both
scheduled functions are safe either way). A run that fails is logged; the next one goes on.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from local.cfn import LOCAL_ACCOUNT_ID, FunctionSpec, ScheduleSpec

__all__ = ["ScheduledTarget", "Scheduler", "rate_seconds", "scheduled_event", "scheduled_targets"]

logger = logging.getLogger("local.scheduler")

_RATE = re.compile(r"^rate\(\s*([1-9][0-9]*)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}

#: What EventBridge Scheduler sends to Lambda when a schedule has no ``Input``: the template's
#: schedules all have one, shaped like this.
_DEFAULT_INPUT = (
    '{"version": "0", "id": "<aws.scheduler.execution-id>", "detail-type": "Scheduled Event", '
    '"source": "aws.scheduler", "account": "%s", "time": "<aws.scheduler.scheduled-time>", '
    '"region": "%s", "resources": ["<aws.scheduler.schedule-arn>"], "detail": {}}'
)


def rate_seconds(expression: str) -> int | None:
    """The period of a ``rate()`` expression in seconds; None for ``cron()``, ``at()`` or anything else."""
    match = _RATE.match(expression.strip())
    if match is None:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).removesuffix("s")]


@dataclass(frozen=True)
class ScheduledTarget:
    """One schedule of one function, with its period in seconds."""

    function: str
    schedule: ScheduleSpec
    period: float


def scheduled_targets(specs: Iterable[FunctionSpec]) -> list[ScheduledTarget]:
    """Every ``rate()`` schedule of the template's functions (see :func:`local.cfn.functions`)."""
    targets = []
    for spec in specs:
        for schedule in spec.schedules:
            period = rate_seconds(schedule.expression)
            if period is None:
                logger.info("%s: %s is not fired locally", spec.logical_id, schedule.expression)
                continue
            targets.append(ScheduledTarget(spec.logical_id, schedule, float(period)))
    return targets


def _region() -> str:
    return os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"


def scheduled_event(schedule: ScheduleSpec, scheduled: datetime, attempt: int = 1) -> Any:
    """The event EventBridge Scheduler hands the function for the run scheduled at ``scheduled``."""
    region = _region()
    text = schedule.input if schedule.input is not None else _DEFAULT_INPUT % (LOCAL_ACCOUNT_ID, region)
    name = schedule.schedule_name or schedule.name
    arn = f"arn:aws:scheduler:{region}:{LOCAL_ACCOUNT_ID}:schedule/default/{name}"
    attributes = {
        "<aws.scheduler.schedule-arn>": arn,
        "<aws.scheduler.scheduled-time>": scheduled.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "<aws.scheduler.execution-id>": str(uuid.uuid4()),
        "<aws.scheduler.attempt-number>": str(attempt),
    }
    for placeholder, value in attributes.items():
        text = text.replace(placeholder, value)
    return json.loads(text)


class Scheduler:
    """Fires ``targets`` through ``invoke(function_logical_id, event)`` until :meth:`stop`."""

    def __init__(
        self,
        invoke: Callable[[str, Any], Any],
        targets: Iterable[ScheduledTarget],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._invoke = invoke
        self._targets = list(targets)
        self._clock = clock
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def targets(self) -> list[ScheduledTarget]:
        return list(self._targets)

    def start(self) -> None:
        for target in self._targets:
            thread = threading.Thread(
                target=self._run, args=(target,), name=f"schedule-{target.function}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        for target in self._targets:
            logger.info(
                "%s runs on its schedule %s (%s)",
                target.function,
                target.schedule.schedule_name or target.schedule.name,
                target.schedule.expression,
            )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop firing; wait up to ``timeout`` seconds for runs under way."""
        self._stopped.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def __enter__(self) -> Scheduler:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, target: ScheduledTarget) -> None:
        due = self._clock() + target.period
        while not self._stopped.wait(max(0.0, due - self._clock())):
            scheduled = datetime.fromtimestamp(due, UTC)
            try:
                result = self._invoke(target.function, scheduled_event(target.schedule, scheduled))
            except Exception:  # the function failed: logged, as Lambda would; the next run goes on
                logger.exception("scheduled run of %s failed", target.function)
            else:
                logger.info("scheduled run of %s: %s", target.function, json.dumps(result)[:500])
            # The next period after this one; runs missed while this one ran are skipped.
            due += target.period * max(1, int((self._clock() - due) // target.period) + 1)
