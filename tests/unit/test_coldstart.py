"""``ai_credits.coldstart``: in Lambda, what the init phase and the DynamoDB client made is frozen out
of the collector's way, and ``random`` is reseeded after a SnapStart restore; elsewhere (a test run,
``make run``: many functions in one long process) nothing is frozen."""

from __future__ import annotations

import gc
import random
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ai_credits.coldstart import init_done, permanent


@pytest.fixture
def lambda_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Callable[..., Any]]]:
    """``LAMBDA_TASK_ROOT`` set, and the runtime's snapshot-restore library: its after-restore hooks."""
    hooks: list[Callable[..., Any]] = []
    runtime_library = types.ModuleType("snapshot_restore_py")
    runtime_library.register_after_restore = hooks.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", runtime_library)
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    gc.unfreeze()
    yield hooks
    gc.unfreeze()


def _tracked(item: object) -> bool:
    return any(tracked is item for tracked in gc.get_objects())


def test_what_the_init_made_is_frozen(lambda_runtime: list[Callable[..., Any]]) -> None:
    made_by_the_import = {"route": ["/v1/consume"]}
    init_done()
    assert gc.get_freeze_count() > 0
    assert not _tracked(made_by_the_import), "frozen: never walked by a collection again"


def test_the_client_is_made_without_collections_and_frozen(lambda_runtime: list[Callable[..., Any]]) -> None:
    with permanent():
        assert not gc.isenabled()
        client = {"service_model": [{}]}
    assert gc.isenabled()
    assert not _tracked(client)


def test_random_is_reseeded_after_a_restore(lambda_runtime: list[Callable[..., Any]]) -> None:
    init_done()

    assert lambda_runtime == [random.seed]
    state = random.getstate()
    snapshot_draws = [random.random() for _ in range(3)]
    random.setstate(state)  # a second environment restored from the same snapshot
    lambda_runtime[0]()
    assert [random.random() for _ in range(3)] != snapshot_draws


def test_outside_lambda_nothing_is_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAMBDA_TASK_ROOT", raising=False)
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # not installed: never imported
    gc.unfreeze()
    init_done()
    with permanent():
        assert gc.isenabled()
    assert gc.get_freeze_count() == 0
