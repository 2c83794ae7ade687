"""Pure helpers for ``status.conditions`` (``metav1.Condition`` semantics)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from llmfleet.api.base import Condition, ConditionStatus


def upsert_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Set condition ``type_`` in a wire-format list; returns (new list, changed?).

    ``lastTransitionTime`` moves only when ``status`` flips, as Kubernetes expects.
    """
    old = next((c for c in conditions if c.get("type") == type_), None)
    transition = now if old is None or old.get("status") != status else None
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:32768],
        last_transition_time=transition or datetime.fromisoformat(old["lastTransitionTime"]),  # type: ignore[index]
        observed_generation=observed_generation,
    ).to_wire()
    if old is not None:
        same = all(
            old.get(k) == new.get(k) for k in ("status", "reason", "message", "observedGeneration")
        )
        if same:
            return conditions, False
    rest = [c for c in conditions if c.get("type") != type_]
    return sorted([*rest, new], key=lambda c: str(c["type"])), True
