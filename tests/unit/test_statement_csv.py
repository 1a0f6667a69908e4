"""The statement as CSV: what a spreadsheet reads back (a header, quoting, no formulas)."""

from __future__ import annotations

import csv
import io

import pytest

from ai_credits import derived
from ai_credits.credentials import open_cursor, seal_cursor
from ai_credits.services import usage


def test_the_csv_quotes_what_needs_it_and_never_starts_a_cell_with_a_formula(monkeypatch):
    entries = [
        {
            "at": "2026-12-04T10:00:00Z",
            "entry_type": "consume",
            "credits": -5,
            "term_start": "2026-11-01T00:00:00Z",
            "site": 'shop.example.com/a,b"c',
            "request_id": "-2+3",
            "feature": "=HYPERLINK",
        },
        {
            "at": "2026-11-01T00:00:00Z",
            "entry_type": "term",
            "credits": 1000,
            "term_start": "2026-11-01T00:00:00Z",
        },
    ]
    monkeypatch.setattr(usage, "_license_of", lambda account_id, license_id: None)
    monkeypatch.setattr(derived, "statement", lambda license_id: iter(entries))

    text = usage.ledger_csv(None, "lic-1")

    assert text.splitlines()[0] == ",".join(usage.CSV_COLUMNS)
    assert text.endswith("\r\n") and "\r\n" in text
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert rows[0]["site"] == 'shop.example.com/a,b"c'
    assert rows[0]["credits"] == "-5", "numbers stay numbers"
    assert (rows[0]["request_id"], rows[0]["feature"]) == ("'-2+3", "'=HYPERLINK")
    assert rows[1] == {
        "at": "2026-11-01T00:00:00Z",
        "type": "term",
        "credits": "1000",
        "term_start": "2026-11-01T00:00:00Z",
        "site": "",
        "subsite": "",
        "request_id": "",
        "grant_id": "",
        "feature": "",
    }


@pytest.mark.parametrize("cursor", ["cs]¦Ì\u00f1.Ö*\x8fA", "é.é", "", ".", "a.b.c", "x" * 3000])
def test_a_cursor_that_is_not_the_services_opens_to_nothing(cursor):
    assert open_cursor(cursor) is None


def test_a_sealed_cursor_opens_to_its_payload():
    payload = {"license_id": "lic-1", "after": "2026-12-04T10:00:00Z#1#0001#CONSUME#a.com#r-1"}
    assert open_cursor(seal_cursor(payload)) == payload
