"""A cold start's garbage collection, and what SnapStart's snapshot must not hold.

Everything a function's init phase creates (modules, classes, the resolver and its routes, the
Logger), and the DynamoDB client its first request creates, live as long as the execution
environment. Yet CPython's collector, run by the count of allocations, keeps examining them while
they are being made, and now and then all of them (some 80,000 objects once the client exists:
half from the import, half botocore's service model), finding nothing to free. So every
``app.py`` ends with ``init_done()``, which moves what the import made to the collector's
permanent generation (``gc.freeze()``), and ``store.client()`` makes the client inside
``permanent()``: no collection while it is being made, frozen once made. Together about a quarter
of a cold start (``make bench``), and collections on warm requests get cheaper as well. Only in
Lambda (``LAMBDA_TASK_ROOT``): a test run or ``make run`` imports many functions into one long
process, where a frozen garbage cycle would stay.

Under SnapStart (template.yaml) the init phase runs once per published version and every cold
start restores its snapshot, so nothing made during init may need to be unique. The AWS clients
(connections, credentials) are created on the first request, after the restore; ``random``'s
state, though, is seeded when the module is imported, and the retries' jitter (``store``'s and
botocore's) draws from it: a restored environment reseeds it from the OS, so that environments
restored from one snapshot never back off in step.
"""

from __future__ import annotations

import contextlib
import gc
import os
import random
from collections.abc import Iterator


def in_lambda() -> bool:
    return bool(os.environ.get("LAMBDA_TASK_ROOT"))


def init_done() -> None:
    """The handler module is imported: freeze what it made, reseed ``random`` after a restore."""
    if in_lambda():
        gc.freeze()
        _reseed_after_restore()


@contextlib.contextmanager
def permanent() -> Iterator[None]:
    """Make objects that live as long as the execution environment: no collection meanwhile,
    frozen afterwards (in Lambda; see above)."""
    if not in_lambda() or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.freeze()


def _reseed_after_restore() -> None:
    try:
        # Shipped with the Lambda Python runtimes (pypi: snapshot-restore-py), never installed
        # elsewhere: no snapshot is taken outside Lambda.
        from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]
    except ImportError:
        return
    register_after_restore(random.seed)
