"""``ai-credits``: the operator's command line, on the same table through the same rules package.

    ai-credits provision LICENSE_ID --account-id ACCOUNT --plan single-site ... --generate-key
    ai-credits show LICENSE_ID [--json]
    ai-credits renew [LICENSE_ID ...] [--now TIME] [--json]
    ai-credits audit [LICENSE_ID ...] [--json]
    ai-credits usage LICENSE_ID [--from TIME] [--to TIME] [--granularity day|month] [--format table|csv|json]
    ai-credits ledger LICENSE_ID [--limit N] [--cursor CURSOR] [--format table|csv|json]

Every command calls the use cases of ``ai_credits.services`` (the functions' own), so the rules
and the conditional writes are exactly the deployed ones. The table is ``--table`` or
``TABLE_NAME``; the DynamoDB is the one boto3 is configured for (``AWS_ENDPOINT_URL_DYNAMODB``,
``--endpoint-url``, or AWS with the usual credentials), or ``make run``'s with ``--local``.

Secrets: a license key never comes on the command line (it would stay in the shell's history
and in the process list): ``--key-stdin`` reads it from standard input, ``--generate-key``
makes one and prints it once, right after provisioning (only its hash is stored, so that is
the only time anyone sees it). Nothing else prints a key, a token or their hashes.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import secrets
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from ai_credits import store
from ai_credits.clock import add_months, format_timestamp, parse_timestamp, utc_now
from ai_credits.errors import DomainError
from ai_credits.models import LedgerPage, LicenseUsage, ProvisionRequest, ProvisionResponse
from ai_credits.services import billing, operator, renewal, usage, views

#: ``--local``: the DynamoDB and table of ``make run`` (local/run.py, local/cfn.py).
LOCAL_TABLE = "ai-credits-local"
LOCAL_ENDPOINT = "http://127.0.0.1:{port}"
LOCAL_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
}

# A generated license key: "AGG-" and five groups of five Crockford base32 characters (125 bits).
_KEY_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_WP_ENVIRONMENTS = ("production", "staging", "development", "local")
_FORMATS = ("table", "csv", "json")


class UsageError(Exception):
    """A mistake on the command line that argparse cannot see (exit status 2)."""


# -- arguments ----------------------------------------------------------------------------


def _timestamp(text: str) -> str:
    try:
        return format_timestamp(parse_timestamp(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time with a zone: {text!r}") from None


def _activation(text: str) -> dict[str, str]:
    environment, separator, site_url = text.partition(":")
    if not separator or environment not in _WP_ENVIRONMENTS or not site_url:
        raise argparse.ArgumentTypeError(
            f"expected ENVIRONMENT:SITE_URL with ENVIRONMENT one of {', '.join(_WP_ENVIRONMENTS)}: {text!r}"
        )
    return {"site_url": site_url, "environment": environment}


def _page_size(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= usage.MAX_PAGE:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {usage.MAX_PAGE}: {text!r}")
    return int(text)


def _add_connection_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The table and DynamoDB options, accepted before the command and after it (where they
    have no defaults of their own, so that they do not undo the ones given before)."""
    unset: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
    group = parser.add_argument_group("table and DynamoDB")
    group.add_argument(
        "--table",
        metavar="NAME",
        help=f"the table (default: $TABLE_NAME; with --local: {LOCAL_TABLE})",
        **unset,
    )
    group.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="a DynamoDB endpoint, e.g. DynamoDB Local (default: $AWS_ENDPOINT_URL_DYNAMODB, else AWS)",
        **unset,
    )
    group.add_argument("--region", help="the AWS region (default: boto3's configuration)", **unset)
    group.add_argument(
        "--local",
        action="store_true",
        help="make run's DynamoDB: $AWS_ENDPOINT_URL_DYNAMODB or DynamoDB Local on 127.0.0.1:"
        "$DYNAMODB_LOCAL_PORT (8000), its table, dummy credentials",
        **unset,
    )


def _connection_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    _add_connection_options(options, defaults=False)
    return options


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def build_parser() -> argparse.ArgumentParser:
    connection = _connection_options()
    parser = argparse.ArgumentParser(
        prog="ai-credits",
        description="Operate AI Credits licenses: provision, show, renew, audit; read their usage and "
        "statement. The same use cases and conditional writes as the Lambda functions, on the same table.",
        epilog="Exit status: 0 done, 1 refused or failed (or drift found), 2 bad usage. "
        "'ai-credits COMMAND --help' describes each command.",
    )
    _add_connection_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    provision = commands.add_parser(
        "provision",
        parents=[connection],
        help="create or update a license (what billing's PUT /v1/admin/licenses/{id} does)",
        description="Create or update a license with the provisioning use case (the admin route's): "
        "same validation, same rules (rule 7 for imported activations), same writes. An update keeps "
        "usage and allocations; a new --credits-per-term applies from the next term.",
        epilog="The license key: --generate-key makes a new one and prints it once (only its hash is "
        "stored: it cannot be shown again); --key-stdin reads it from standard input (an update needs "
        "the license's key; a different key replaces it). Example: ai-credits provision lic-1 --local "
        "--account-id acct-1 --plan single-site --site-limit 1 --credits-per-term 1000 --generate-key",
    )
    provision.add_argument("license_id", metavar="LICENSE_ID")
    provision.add_argument("--account-id", required=True, help="the customer's account")
    provision.add_argument("--plan", required=True, choices=["single-site", "multi-site"])
    provision.add_argument(
        "--site-limit", required=True, type=int, metavar="N", help="live activations allowed"
    )
    provision.add_argument("--credits-per-term", required=True, type=int, metavar="N")
    provision.add_argument("--term-months", type=int, default=12, metavar="N", help="default: 12")
    provision.add_argument(
        "--term-start", type=_timestamp, metavar="TIME", help="RFC 3339 (default: now, to the second)"
    )
    provision.add_argument(
        "--term-end", type=_timestamp, metavar="TIME", help="default: --term-start plus --term-months"
    )
    provision.add_argument(
        "--expires-at",
        type=_timestamp,
        metavar="TIME",
        help="paid through (default: --term-end, i.e. not renewed unless billing extends it)",
    )
    provision.add_argument(
        "--activation",
        dest="activations",
        action="append",
        type=_activation,
        default=[],
        metavar="ENVIRONMENT:SITE_URL",
        help="import an existing activation (rule 7), e.g. production:https://www.example.com/; repeatable",
    )
    provision.add_argument(
        "--network-activation",
        dest="network_activations",
        action="append",
        type=_activation,
        default=[],
        metavar="ENVIRONMENT:SITE_URL",
        help="the same for a network-activated Multisite; repeatable",
    )
    key = provision.add_mutually_exclusive_group(required=True)
    key.add_argument(
        "--generate-key", action="store_true", help="a new license (refused if it exists): make its key"
    )
    key.add_argument("--key-stdin", action="store_true", help="read the license key from standard input")
    _json_option(provision)

    show = commands.add_parser(
        "show",
        parents=[connection],
        help="a license with its sites and its ledger",
        description="A license (the figures of the portal's Manage AI Credits screen plus billing's "
        "fields), every site of the current term, and the ledger: consumes and expired credits. "
        "Strongly consistent reads; never a key, a token or a hash.",
    )
    show.add_argument("license_id", metavar="LICENSE_ID")
    show.add_argument(
        "--now", type=_timestamp, metavar="TIME", help="the time the status is computed for (default: now)"
    )
    _json_option(show)

    renew = commands.add_parser(
        "renew",
        parents=[connection],
        help="renew the licenses whose term ended (what the hourly RenewFunction does)",
        description="The renewal use case of RenewFunction: renew every license whose term ended at "
        "--now (or only the ones named), exactly once per term; mark expired those not paid through. "
        "A license that fails is reported and the others go on (exit status 1).",
    )
    renew.add_argument(
        "license_ids", nargs="*", metavar="LICENSE_ID", help="default: every license that is due"
    )
    renew.add_argument(
        "--now",
        type=_timestamp,
        metavar="TIME",
        help="the renewal's time, like the schedule event's 'time' (default: now)",
    )
    _json_option(renew)

    audit = commands.add_parser(
        "audit",
        parents=[connection],
        help="reconcile ledgers with counters (make audit)",
        description="Check every license (or the ones named): 0 <= used <= allocated and remaining = "
        "allocated - used on every site, unallocated >= 0 and unallocated + allocated = credits_total, "
        "the license's site index against the site items, and the ledger replayed from zero against "
        "the used counters. Exit status 1 on drift. Run it on a quiet table: a consume landing "
        "between its two reads shows as drift.",
    )
    audit.add_argument("license_ids", nargs="*", metavar="LICENSE_ID", help="default: every license (a Scan)")
    _json_option(audit)

    usage_command = commands.add_parser(
        "usage",
        parents=[connection],
        help="where a license's credits went: by site, AI feature and day or month",
        description="The portal's usage view (GET /v1/licenses/{id}/usage) of any license: credits "
        "(net of refunds) and requests from --from to --to, by site with their AI features, and per "
        "UTC day or month with activity. Derived from the table's stream: seconds behind a write.",
        epilog="--format csv: a line per day (month) with activity: start, credits, requests, then a "
        "column of credits per site (most credits first). --format json: the route's body.",
    )
    usage_command.add_argument("license_id", metavar="LICENSE_ID")
    usage_command.add_argument(
        "--from", dest="from_", type=_timestamp, metavar="TIME", help="RFC 3339 (default: the term's start)"
    )
    usage_command.add_argument("--to", type=_timestamp, metavar="TIME", help="RFC 3339 (default: now)")
    usage_command.add_argument("--granularity", choices=["day", "month"], default="day", help="default: day")
    usage_command.add_argument("--format", choices=_FORMATS, default="table", help="default: table")

    ledger = commands.add_parser(
        "ledger",
        parents=[connection],
        help="a license's statement: its credit movements, newest first",
        description="The portal's statement (GET /v1/licenses/{id}/ledger) of any license: term "
        "credits, grants, carry-overs, consumes, refunds and expiries, newest first, a page at a time. "
        "Derived from the table's stream: seconds behind a write.",
        epilog="--format csv: every entry, exactly the route's CSV (text/csv), without --limit or "
        "--cursor. --format json: the route's page, with next_cursor.",
    )
    ledger.add_argument("license_id", metavar="LICENSE_ID")
    ledger.add_argument(
        "--limit",
        type=_page_size,
        metavar="N",
        help=f"entries of the page, 1 to {usage.MAX_PAGE} (default: 100)",
    )
    ledger.add_argument("--cursor", metavar="CURSOR", help="the next page: the cursor the last one printed")
    ledger.add_argument("--format", choices=_FORMATS, default="table", help="default: table")
    return parser


# -- the table ----------------------------------------------------------------------------


@contextlib.contextmanager
def _environment(arguments: argparse.Namespace) -> Iterator[str]:
    """Point the rules package at the chosen table and DynamoDB for one command (the settings it
    reads from the environment), and put everything back afterwards; yields the table name."""
    changes: dict[str, str] = {}
    if arguments.local:
        port = os.environ.get("DYNAMODB_LOCAL_PORT", "8000")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or LOCAL_ENDPOINT.format(port=port)
        changes["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
        changes.update({name: value for name, value in LOCAL_AWS_ENV.items() if not os.environ.get(name)})
    if arguments.endpoint_url:
        changes["AWS_ENDPOINT_URL_DYNAMODB"] = arguments.endpoint_url
    if arguments.region:
        changes["AWS_DEFAULT_REGION"] = arguments.region
    table = arguments.table or os.environ.get("TABLE_NAME") or (LOCAL_TABLE if arguments.local else "")
    if not table:
        raise UsageError("which table? --table NAME, TABLE_NAME, or --local for make run's")
    changes["TABLE_NAME"] = table
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    store.reset_clients()
    try:
        yield table
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        store.reset_clients()


# -- output -------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(header), *(len(row[index]) for row in cells)]) for index, header in enumerate(headers)]
    for row in [list(headers), *cells]:
        print(
            "  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip(), file=out
        )


def _print_license(view: ProvisionResponse, out: TextIO) -> None:
    print(
        f"license {view.license_id}: account {view.account_id}, {view.plan}, site_limit {view.site_limit}",
        file=out,
    )
    print(
        f"status {view.status}; term {view.term_start} .. {view.term_end} ({view.term_months} months); "
        f"expires_at {view.expires_at}",
        file=out,
    )
    print(
        f"credits: total {view.credits_total}, allocated {view.allocated}, unallocated {view.unallocated}; "
        f"per term {view.credits_per_term}; needs_allocation {_cell(view.needs_allocation)}",
        file=out,
    )
    print(f"\nsites ({len(view.sites)})", file=out)
    if view.sites:
        _table(
            ["SITE", "ENVIRONMENT", "NETWORK", "ACTIVE", "ALLOCATED", "USED", "REMAINING", "ACTIVATED_AT"],
            [
                [s.site, s.environment, s.network, s.active, s.allocated, s.used, s.remaining, s.activated_at]
                for s in view.sites
            ],
            out,
        )


# What the ledger shows of an entry: no keys of the item, no hash of the request body.
_LEDGER_HIDDEN = frozenset({"pk", "sk", "license_id", "body_hash"})


def _ledger(license_id: str) -> list[dict[str, Any]]:
    entries = [
        {name: value for name, value in entry.items() if name not in _LEDGER_HIDDEN}
        for entry in store.ledger_entries(license_id)
    ]
    return sorted(entries, key=lambda entry: (str(entry.get("at", "")), entry.get("type", "")))


def _print_ledger(entries: list[dict[str, Any]], out: TextIO) -> None:
    print(f"\nledger ({len(entries)} entries)", file=out)
    if not entries:
        return
    rows = []
    for entry in entries:
        if entry.get("type") == "consume":
            details = {name: entry.get(name) for name in ("feature", "subsite", "remaining_after")}
            detail = " ".join(f"{name}={value}" for name, value in details.items() if value is not None)
            rows.append(
                [
                    "consume",
                    entry.get("at"),
                    entry.get("site"),
                    entry.get("request_id"),
                    entry.get("amount"),
                    detail,
                ]
            )
        elif entry.get("type") == "expiry_sites":  # a batch of sites a renewal moved on
            expired = sum(entry.get("sites", {}).values())
            detail = f"term {entry.get('term_start')}, {len(entry.get('used', {}))} site(s)"
            rows.append([entry.get("type"), entry.get("at"), None, None, expired, detail])
        else:
            term = f"{entry.get('term_start')} .. {entry.get('term_end')}"
            detail = f"term {term}, unallocated {entry.get('unallocated')}"
            rows.append([entry.get("type"), entry.get("at"), None, None, entry.get("expired"), detail])
    _table(["TYPE", "AT", "SITE", "REQUEST_ID", "CREDITS", "DETAIL"], rows, out)


def _dump(value: Any, out: TextIO) -> None:
    print(json.dumps(value, indent=2), file=out)


def _named_credits(credits: Mapping[str, int], order: Sequence[str] | None = None) -> str:
    """``rewrite=40 summarize=5``: credits by name (in ``order`` when given)."""
    names = [name for name in order if name in credits] if order is not None else list(credits)
    return " ".join(f"{name}={credits[name]}" for name in names)


def _print_usage(view: LicenseUsage, out: TextIO) -> None:
    print(f"usage of {view.license_id}: {view.from_} .. {view.to}, by {view.granularity}", file=out)
    print(f"credits {view.credits}, requests {view.requests}", file=out)
    print(f"\nsites ({len(view.sites)})", file=out)
    if view.sites:
        _table(
            ["SITE", "CREDITS", "REQUESTS", "FEATURES"],
            [[row.site, row.credits, row.requests, _named_credits(row.features)] for row in view.sites],
            out,
        )
    print(f"\n{view.granularity}s with activity ({len(view.buckets)})", file=out)
    if view.buckets:
        order = [row.site for row in view.sites]
        _table(
            ["START", "CREDITS", "REQUESTS", "SITES"],
            [[b.start, b.credits, b.requests, _named_credits(b.sites, order)] for b in view.buckets],
            out,
        )


def _usage_csv(view: LicenseUsage, out: TextIO) -> None:
    sites = [row.site for row in view.sites]
    writer = csv.writer(out)
    writer.writerow(["start", "credits", "requests", *sites])
    for bucket in view.buckets:
        writer.writerow(
            [bucket.start, bucket.credits, bucket.requests, *(bucket.sites.get(s, 0) for s in sites)]
        )


def _page_json(page: LedgerPage) -> dict[str, Any]:
    """The route's body: entries without their absent fields."""
    return {
        "entries": [entry.model_dump(exclude_none=True) for entry in page.entries],
        "next_cursor": page.next_cursor,
    }


def _print_statement(license_id: str, page: LedgerPage, out: TextIO) -> None:
    print(f"ledger of {license_id}: {len(page.entries)} entries, newest first", file=out)
    if page.entries:
        columns = usage.CSV_COLUMNS  # the statement's columns, in the CSV's order
        entries = [entry.model_dump() for entry in page.entries]
        _table([name.upper() for name in columns], [[e[name] for name in columns] for e in entries], out)
    if page.next_cursor:
        print(f"\nnext page: --cursor {page.next_cursor}", file=out)


# -- the commands -------------------------------------------------------------------------


def _now(arguments: argparse.Namespace) -> str:
    return arguments.now or format_timestamp(utc_now())


def new_license_key() -> str:
    groups = ("".join(secrets.choice(_KEY_ALPHABET) for _ in range(5)) for _ in range(5))
    return "AGG-" + "-".join(groups)


def _read_key(stdin: TextIO) -> str:
    key = stdin.readline().strip()
    if not key:
        raise UsageError("--key-stdin: no license key on standard input")
    return key


def _provision(arguments: argparse.Namespace, stdin: TextIO, out: TextIO) -> int:
    term_start = arguments.term_start or format_timestamp(utc_now())
    term_end = arguments.term_end or format_timestamp(
        add_months(parse_timestamp(term_start), arguments.term_months)
    )
    activations = [*arguments.activations, *({**a, "network": True} for a in arguments.network_activations)]
    if arguments.generate_key:
        if store.get_license(arguments.license_id) is not None:
            raise UsageError(
                f"license {arguments.license_id!r} exists: updating it needs its key (--key-stdin); "
                "--generate-key is for a new license"
            )
        license_key = new_license_key()
    else:
        license_key = _read_key(stdin)
    body: dict[str, Any] = {
        "license_key": license_key,
        "account_id": arguments.account_id,
        "plan": arguments.plan,
        "site_limit": arguments.site_limit,
        "credits_per_term": arguments.credits_per_term,
        "term_months": arguments.term_months,
        "term_start": term_start,
        "term_end": term_end,
        "expires_at": arguments.expires_at or term_end,
    }
    if activations:
        body["activations"] = activations
    request = _validated(body)
    created, view = billing.provision_license(arguments.license_id, request, format_timestamp(utc_now()))
    shown_key = license_key if arguments.generate_key else None
    if arguments.json:
        answer: dict[str, Any] = {"created": created, "license": view.model_dump()}
        if shown_key:
            answer["license_key"] = shown_key
        _dump(answer, out)
        return 0
    print(f"{'created' if created else 'updated'} license {view.license_id}", file=out)
    if shown_key:
        print(f"license key (shown once, only its hash is stored): {shown_key}", file=out)
    print(file=out)
    _print_license(view, out)
    return 0


def _validated(body: Mapping[str, Any]) -> ProvisionRequest:
    """The admin route's request model; its errors without the values given (a key among them)."""
    from pydantic import ValidationError

    try:
        return ProvisionRequest.model_validate(dict(body))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc'])}: {issue['msg']}"
            for issue in error.errors(include_input=False, include_url=False)
        )
        raise UsageError(f"invalid license: {problems}") from None


def _show(arguments: argparse.Namespace, out: TextIO) -> int:
    license_, sites, grants = store.get_license_view(arguments.license_id)
    if license_ is None:
        print(f"error: not_found: no license {arguments.license_id!r}", file=sys.stderr)
        return 1
    view = views.license_view(license_, sites, grants, _now(arguments))
    ledger = _ledger(arguments.license_id)
    if arguments.json:
        _dump({"license": view.model_dump(), "ledger": ledger}, out)
        return 0
    _print_license(view, out)
    _print_ledger(ledger, out)
    return 0


def _renew(arguments: argparse.Namespace, out: TextIO) -> int:
    report = renewal.renew_due(
        _now(arguments), arguments.license_ids or None, wall_now=format_timestamp(utc_now())
    )
    if arguments.json:
        _dump(report.as_dict(), out)
    else:
        print(f"renewal at {report.now}", file=out)
        for outcome in ("renewed", "expired", "not_due"):
            names: list[str] = getattr(report, outcome)
            print(f"{outcome} ({len(names)}): {', '.join(names) or '-'}", file=out)
        print(f"failed ({len(report.failed)}):{'' if report.failed else ' -'}", file=out)
        for failure in report.failed:
            print(f"  {failure['license_id']}: {failure['error']}", file=out)
    return 1 if report.failed else 0


def _audit(arguments: argparse.Namespace, table: str, out: TextIO) -> int:
    drift = operator.audit(arguments.license_ids or None)
    if arguments.json:
        _dump({"table": table, "drift": drift}, out)
    else:
        for license_id, problems in sorted(drift.items()):
            for problem in problems:
                print(f"DRIFT {license_id}: {problem}", file=out)
        verdict = f"{len(drift)} license(s) drifted" if drift else "no drift"
        print(f"audit of {table}: {verdict}", file=out)
    return 1 if drift else 0


def _usage(arguments: argparse.Namespace, out: TextIO) -> int:
    view = usage.license_usage(
        None,
        arguments.license_id,
        arguments.from_,
        arguments.to,
        arguments.granularity,
        format_timestamp(utc_now()),
    )
    if arguments.format == "json":
        _dump(view.model_dump(by_alias=True), out)
    elif arguments.format == "csv":
        _usage_csv(view, out)
    else:
        _print_usage(view, out)
    return 0


def _ledger_statement(arguments: argparse.Namespace, out: TextIO) -> int:
    if arguments.format == "csv":
        if arguments.limit is not None or arguments.cursor is not None:
            raise UsageError("--format csv prints every entry: no --limit or --cursor")
        out.write(usage.ledger_csv(None, arguments.license_id))
        return 0
    page = usage.ledger_page(None, arguments.license_id, arguments.limit or 100, arguments.cursor)
    if arguments.format == "json":
        _dump(_page_json(page), out)
    else:
        _print_statement(arguments.license_id, page, out)
    return 0


def main(argv: Sequence[str] | None = None, stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    """Run one command; the exit status (0 done, 1 refused/failed/drift, 2 bad usage)."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    stdin, out = stdin or sys.stdin, out or sys.stdout
    try:
        with _environment(arguments) as table:
            if arguments.command == "provision":
                return _provision(arguments, stdin, out)
            if arguments.command == "show":
                return _show(arguments, out)
            if arguments.command == "renew":
                return _renew(arguments, out)
            if arguments.command == "usage":
                return _usage(arguments, out)
            if arguments.command == "ledger":
                return _ledger_statement(arguments, out)
            return _audit(arguments, table, out)
    except UsageError as error:
        print(f"ai-credits {arguments.command}: error: {error}", file=sys.stderr)
        return 2
    except DomainError as error:
        hint = " (is make run going?)" if arguments.local and error.code == "unavailable" else ""
        print(f"error: {error.code}: {error.detail}{hint}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as error:  # no table, no credentials, no region ...
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
