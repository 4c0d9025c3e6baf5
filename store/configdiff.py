"""Differences between two configs, as ``{key: [old, new]}``."""

from __future__ import annotations

from typing import Any, Mapping

_MISSING = None  # a key absent on one side shows as null there


def diff_configs(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Keys whose values differ between ``old`` and ``new``, in ``new``'s order."""
    old = old or {}
    keys = list(new) + [k for k in old if k not in new]
    return {k: [old.get(k, _MISSING), new.get(k, _MISSING)] for k in keys if old.get(k) != new.get(k) or (k in old) != (k in new)}
