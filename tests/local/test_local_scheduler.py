"""make run fires the template's rate() schedules as EventBridge Scheduler does (local/scheduler.py):
the hold sweeper every minute, with the scheduled event of its Input; no AWS, no DynamoDB."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from local.cfn import ScheduleSpec, functions
from local.scheduler import ScheduledTarget, Scheduler, rate_seconds, scheduled_event, scheduled_targets

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(2 days)", 172800),
        ("cron(0 * * * ? *)", None),
        ("at(2026-11-25T09:00:00)", None),
        ("rate(0 minutes)", None),
    ],
)
def test_the_period_comes_from_the_rate_expression(expression: str, seconds: int | None) -> None:
    assert rate_seconds(expression) == seconds


def test_the_templates_hold_sweeper_runs_every_minute_and_the_renewal_hourly(
    template: dict[str, Any],
) -> None:
    targets = {target.function: target for target in scheduled_targets(functions(template, "table"))}

    assert {name: target.period for name, target in targets.items()} == {
        "HoldSweeperFunction": 60.0,
        "RenewFunction": 3600.0,
    }


def test_the_event_is_the_schedules_input_with_the_scheduled_time(template: dict[str, Any]) -> None:
    (sweeper,) = [spec for spec in functions(template, "table") if spec.logical_id == "HoldSweeperFunction"]
    (schedule,) = sweeper.schedules
    event = scheduled_event(schedule, datetime(2026, 11, 25, 9, 5, tzinfo=UTC))
    sample = json.loads((ROOT / "events" / "sweep_holds-scheduled.json").read_text())

    assert event["time"] == "2026-11-25T09:05:00Z"
    assert event["resources"] == [
        "arn:aws:scheduler:us-east-1:123456789012:schedule/default/ai-credits-local-hold-sweeper"
    ]
    assert "<" not in json.dumps(event)  # every context attribute filled in
    assert set(event) == set(sample)
    assert {key: event[key] for key in ("version", "detail-type", "source", "detail")} == {
        key: sample[key] for key in ("version", "detail-type", "source", "detail")
    }


def test_the_scheduler_invokes_each_period_with_the_scheduled_time_until_stopped() -> None:
    calls: list[tuple[str, Any]] = []
    two = threading.Event()

    def invoke(function: str, event: Any) -> Any:
        calls.append((function, event))
        if len(calls) == 2:
            two.set()
        if len(calls) == 1:
            raise RuntimeError("a failed run is logged; the next one goes on")
        return {"released": 0}

    schedule = ScheduleSpec("EveryMinute", "rate(1 minute)", "sweeper")
    with Scheduler(invoke, [ScheduledTarget("HoldSweeperFunction", schedule, 0.05)]):
        assert two.wait(5)
    count = len(calls)
    two.clear()
    assert not two.wait(0.2) and len(calls) == count  # stopped

    first, second = (event for _, event in calls[:2])
    assert {function for function, _ in calls} == {"HoldSweeperFunction"}
    assert first["source"] == "aws.scheduler" and first["id"] != second["id"]
    assert first["time"] <= second["time"]
