"""Faults injected into a real worker process, for tests/integration/test_failure_policy.py.

A test starts the worker with PYTHONPATH pointing here; Python then imports this module
at start-up. It changes nothing unless asked through the environment:

QCARE_TEST_BUG_PREFIX=p    store.apply_batch raises RuntimeError (an unexpected exception,
                           a bug) for any batch holding a msg_id that starts with p
QCARE_TEST_FAIL_CONSUME=n  the n-th basic.consume of the process fails (ConnectionResetError),
                           once: a lane's set-up failing after others were set up

The patches are applied when the module is first imported by the program, so the code
under test is whatever the working directory holds (this file imports nothing of it).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import itertools
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any


def _patch_store(module: ModuleType) -> None:
    prefix = os.environ.get("QCARE_TEST_BUG_PREFIX")
    if not prefix:
        return
    original = module.apply_batch

    async def apply_batch_with_injected_bug(conn: Any, envs: list[Any]) -> Any:
        if any(env.msg_id.startswith(prefix) for env in envs):
            raise RuntimeError("injected by the test: an unexpected exception")
        return await original(conn, envs)

    module.apply_batch = apply_batch_with_injected_bug


def _patch_queue(module: ModuleType) -> None:
    nth = int(os.environ.get("QCARE_TEST_FAIL_CONSUME") or 0)
    if nth <= 0:
        return
    original = module.Queue.consume
    calls = itertools.count(1)

    async def consume_failing_once(self: Any, *args: Any, **kwargs: Any) -> Any:
        if next(calls) == nth:
            raise ConnectionResetError("injected by the test: basic.consume failed")
        return await original(self, *args, **kwargs)

    module.Queue.consume = consume_failing_once


PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "qcare_ingest.store": _patch_store,
    "aio_pika.queue": _patch_queue,
}


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        patch = PATCHES.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            patch(module)

        loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


if any(os.environ.get(name) for name in ("QCARE_TEST_BUG_PREFIX", "QCARE_TEST_FAIL_CONSUME")):
    sys.meta_path.insert(0, _PatchOnImport())
