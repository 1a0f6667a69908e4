"""``make audit``: reconcile the ledger with the counters, for one license or the whole table.

    python -m local.audit [LICENSE_ID ...]

Exits 0 when nothing drifted, 1 with every drift printed otherwise. It reads the table named
by ``TABLE_NAME`` (default ``ai-credits-local``) on the DynamoDB that boto3 is configured for:
``AWS_ENDPOINT_URL_DYNAMODB`` for DynamoDB Local (``make audit`` points it at ``make run``'s),
unset for AWS with the usual credentials. Run it on a quiet table: the license partition and
its ledger are two reads, so a consume landing between them shows as drift.
"""

from __future__ import annotations

import argparse
import os
import sys

from local import REPO_ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("license_ids", nargs="*", metavar="LICENSE_ID", help="default: every license")
    arguments = parser.parse_args(argv)
    os.environ.setdefault("TABLE_NAME", "ai-credits-local")
    sys.path.insert(0, str(REPO_ROOT / "shared"))
    from ai_credits import services

    drift = services.audit(arguments.license_ids or None)
    for license_id, problems in sorted(drift.items()):
        for problem in problems:
            print(f"DRIFT {license_id}: {problem}")
    verdict = f"{len(drift)} license(s) drifted" if drift else "no drift"
    print(f"audit of {os.environ['TABLE_NAME']}: {verdict}")
    return 1 if drift else 0


if __name__ == "__main__":
    sys.exit(main())
