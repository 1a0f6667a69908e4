"""The stream processor: a batch of the table's change records in, the derived data out
(``ai_credits.changes`` says what each record means, ``ai_credits.derived`` writes it).

A batch is applied in three steps, each exactly once however often the batch is delivered:

1. the statement entries, in BatchWriteItem requests (an entry written again is the same item);
2. the usage contributions, one conditional UpdateItem per rollup (site and day) for the whole
   batch, guarded by the site's ``rev``;
3. the events: the ones without a marker are put on the bus, then marked sent. A crash between
   the two puts an event again on redelivery, with the same ``event_id`` (at least once, as the
   contract says; the vendor's target deduplicates on it).

When a step fails, the batch reports the first record whose data may be incomplete as its
failure (Lambda's partial batch response): the event source mapping hands that record and every
later one to the function again, and what was already applied is skipped as above.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ai_credits import bus, changes, derived
from ai_credits.changes import Change, Contribution, Derived, Event
from ai_credits.observability import logger


@dataclass
class BatchReport:
    """What a batch did: records read, entries written, rollup updates, events put, and the
    sequence number of the first record not fully applied (None: all of them)."""

    records: int = 0
    entries: int = 0
    contributions: int = 0
    rollup_updates: int = 0
    events: int = 0
    events_skipped: int = 0
    failed_at: str | None = None
    failed_steps: list[str] = field(default_factory=list)

    def failures(self) -> list[dict[str, str]]:
        return [{"itemIdentifier": self.failed_at}] if self.failed_at is not None else []


def process(records: Sequence[Mapping[str, Any]]) -> BatchReport:
    report = BatchReport(records=len(records))
    parsed: list[tuple[Change, Derived]] = []
    for index, record in enumerate(records):
        try:
            change = changes.decode(record)
            parsed.append((change, changes.derive(change)))
        except Exception:  # a record this code cannot read: report it, Lambda retries from it
            logger.exception("stream record not understood", extra={"record_index": index})
            report.failed_steps.append("decode")
            break
    failed = _first_failures(parsed, report)
    first_bad = min(failed, default=len(parsed))
    if first_bad < len(records):
        report.failed_at = records[first_bad]["dynamodb"]["SequenceNumber"]
    return report


def _first_failures(parsed: list[tuple[Change, Derived]], report: BatchReport) -> list[int]:
    """Apply the three steps; the indexes of the first record of each failed one."""
    failed: list[int] = []
    with_entries = [index for index, (_, data) in enumerate(parsed) if data.entries]
    entries = [entry for _, data in parsed for entry in data.entries]
    if entries:
        try:
            derived.put_entries(entries)
            report.entries = len(entries)
        except Exception:
            logger.exception("statement entries not written")
            report.failed_steps.append("statement")
            failed.append(with_entries[0])
    failed.extend(_apply_usage(parsed, report))
    failed.extend(_publish(parsed, report))
    return failed


def _apply_usage(parsed: list[tuple[Change, Derived]], report: BatchReport) -> list[int]:
    groups: dict[tuple[str, str, str, str], list[tuple[int, Contribution]]] = defaultdict(list)
    for index, (_, data) in enumerate(parsed):
        for contribution in data.contributions:
            groups[contribution.rollup].append((index, contribution))
    failed: list[int] = []
    for group in groups.values():
        try:
            report.rollup_updates += derived.apply_contributions([contribution for _, contribution in group])
            report.contributions += len(group)
        except Exception:
            logger.exception("usage rollup not updated")
            report.failed_steps.append("usage")
            failed.append(group[0][0])
    return failed


def _publish(parsed: list[tuple[Change, Derived]], report: BatchReport) -> list[int]:
    indexes = [index for index, (_, data) in enumerate(parsed) if data.events or data.transitions]
    if not indexes:
        return []
    try:
        events = _events_of(data for _, data in parsed)
        sent = derived.sent_events(event.event_id for event, _ in events)
        fresh = [(event, account) for event, account in events if event.event_id not in sent]
        report.events_skipped = len(events) - len(fresh)
        if fresh:
            bus.put(
                [
                    bus.entry(event.detail_type, event.full_detail(account), event.at)
                    for event, account in fresh
                ]
            )
            derived.mark_sent((event.event_id for event, _ in fresh), time.time())
        report.events = len(fresh)
    except Exception:
        logger.exception("events not published")
        report.failed_steps.append("events")
        return [indexes[0]]
    return []


def _events_of(batch: Iterable[Derived]) -> list[tuple[Event, str]]:
    """Every event of the batch with its license's account: the license events as derived, the
    site transitions judged with their license's ``low_balance_percent`` (one BatchGetItem)."""
    batch = list(batch)
    wanted = {event.license_id for data in batch for event in data.events if event.account_id is None}
    wanted |= {transition.license_id for data in batch for transition in data.transitions}
    licenses = derived.license_settings(wanted) if wanted else {}
    events: list[tuple[Event, str]] = []
    for data in batch:
        for event in data.events:
            account = event.account_id or licenses.get(event.license_id, ("", 20))[0]
            events.append((event, account))
        for transition in data.transitions:
            if transition.license_id not in licenses:
                continue  # the license is gone: nobody to tell
            account, percent = licenses[transition.license_id]
            events.extend((event, account) for event in changes.site_events(transition, percent))
    return events
