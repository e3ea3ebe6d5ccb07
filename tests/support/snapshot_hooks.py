"""An in-process stand-in for the runtime's `snapshot_restore_py`: its registry of SnapStart
hooks, in registration order, as the managed runtime's module keeps it."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

Hook = tuple[Callable[..., object], tuple[Any, ...], dict[str, Any]]


def snapshot_restore_stand_in() -> Any:
    """A fresh `snapshot_restore_py` module (to put in `sys.modules`)."""
    module = types.ModuleType("snapshot_restore_py")
    before: list[Hook] = []
    after: list[Hook] = []

    def register_before_snapshot(func: Callable[..., object], *args: Any, **kwargs: Any) -> Any:
        before.append((func, args, kwargs))
        return func

    def register_after_restore(func: Callable[..., object], *args: Any, **kwargs: Any) -> Any:
        after.append((func, args, kwargs))
        return func

    module.register_before_snapshot = register_before_snapshot  # type: ignore[attr-defined]
    module.register_after_restore = register_after_restore  # type: ignore[attr-defined]
    module.get_before_snapshot = lambda: before  # type: ignore[attr-defined]
    module.get_after_restore = lambda: after  # type: ignore[attr-defined]
    return module
