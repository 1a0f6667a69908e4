"""``make run``: DynamoDB Local + the table from template.yaml + the local gateway, until Ctrl-C.

Environment (all optional):

- ``PORT`` (3000): the gateway's port on 127.0.0.1.
- ``TABLE_NAME`` (``ai-credits-local``): the table the functions use.
- ``AWS_ENDPOINT_URL_DYNAMODB``: use that DynamoDB instead of starting DynamoDB Local.
- ``DYNAMODB_LOCAL_PORT`` (8000): where DynamoDB Local listens; its data lives in
  ``.local/dynamodb-data/`` and survives restarts (``make clean`` deletes it).
- ``LOCAL_JWT_SECRET``, ``LOCAL_JWT_AUDIENCE``, ``LOCAL_JWT_ISSUER``, ``LOCAL_ADMIN_TOKEN``: see
  :mod:`local.tokens`.

Extension point: functions appended to :data:`ON_READY` are called with the gateway once the table
exists and before serving starts (e.g. to provision a demo license).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType

from local import REPO_ROOT
from local.cfn import DEFAULT_LOCAL_TABLE, ensure_table, load_template
from local.dynamodb_local import DEFAULT_ROOT, DynamoDBLocalError, start
from local.gateway import GatewayServer, build_gateway, serve_forever

__all__ = ["ON_READY", "main"]

#: Called in order with the server after the table exists, before requests are served.
ON_READY: list[Callable[[GatewayServer], None]] = []

_FAKE_AWS_ENV = {
    # DynamoDB Local accepts any credentials; these keep boto3 from looking for real ones
    # (and from ever asking an instance metadata endpoint).
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}

logger = logging.getLogger("local.run")


class _Stop(Exception):
    """Raised by the SIGTERM handler to unwind serve_forever like Ctrl-C does."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def main(
    argv: Sequence[str] | None = None, on_ready: Sequence[Callable[[GatewayServer], None]] = ON_READY
) -> int:
    """Run until Ctrl-C or SIGTERM; DynamoDB Local (when started here) is stopped on the way out."""
    del argv  # configuration comes from the environment, like the functions' own
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)  # "Found credentials in environment..."
    for name, value in _FAKE_AWS_ENV.items():
        os.environ.setdefault(name, value)
    table_name = os.environ.setdefault("TABLE_NAME", DEFAULT_LOCAL_TABLE)
    port = int(os.environ.get("PORT", "3000"))
    signal.signal(signal.SIGTERM, _raise_stop)
    # Ctrl-C must stop the server even when started from a shell that ignores SIGINT for
    # background jobs (the ignored disposition would be inherited).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    template = load_template()

    import boto3  # after the environment is complete: boto3 reads it when the client is made

    try:
        with contextlib.ExitStack() as stack:
            if not os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"):
                ddb_port = int(os.environ.get("DYNAMODB_LOCAL_PORT", "8000"))
                data_path = DEFAULT_ROOT / "dynamodb-data"
                try:
                    dynamodb = stack.enter_context(start(ddb_port, data_path))
                except DynamoDBLocalError as exc:
                    logger.error("%s", exc)
                    return 1
                # boto3 picks this up by itself; nothing passes endpoint_url explicitly.
                os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb.endpoint
                logger.info("DynamoDB Local started at %s (data in %s)", dynamodb.endpoint, data_path)
            ensure_table(boto3.client("dynamodb"), table_name, template)
            server = build_gateway(template, "127.0.0.1", port, base_dir=REPO_ROOT, table_name=table_name)
            stack.callback(server.server_close)
            for hook in on_ready:
                hook(server)
            serve_forever(server)
    except (KeyboardInterrupt, _Stop):
        logger.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
