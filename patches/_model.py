"""Shared by the model-client patches (openai, anthropic): when a call is a ``Model`` action."""

from __future__ import annotations

from typing import Any

from autotrace import records
from autotrace.runtime import actions
from autotrace.runtime.actions import OpenAction
from autotrace.startup.patching import Patch


def model_detail(provider: str, model: Any) -> str:
    """``generate (<provider>/<model>)``, the detail inspect gives its own Model actions."""
    return f"generate ({provider}/{model if model else '?'})"


def model_action_skipped(patch: Patch) -> bool:
    """Whether ``begin_model_action`` would start nothing in this context, whatever the call:
    the patch is off, tracing is suppressed, or the call is inside a ``Model`` action."""
    if not patch.enabled or actions.traces_nothing():
        return True
    current = actions.current_action()
    return current is not None and current.action == records.MODEL


def begin_model_action(patch: Patch, provider: str, model: Any) -> OpenAction | None:
    """Start a ``Model`` action, or None: patch off, tracing suppressed, or already in one.

    A client call made inside inspect's ``Model.generate`` (itself a ``Model`` action)
    is the same work, so it adds no second action.
    """
    try:
        if model_action_skipped(patch):
            return None
        return actions.start_action(records.MODEL, model_detail(provider, model))
    except Exception as exc:
        patch.fail(f"could not start a Model action: {exc!r}")
        return None
