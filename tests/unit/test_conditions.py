from datetime import UTC, datetime, timedelta

from llmfleet.api.conditions import upsert_condition

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_transition_time_moves_only_on_status_flip():
    conds, changed = upsert_condition([], "Valid", "False", "UnknownSLATier", "x", T0, 1)
    assert changed and conds[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    same, changed = upsert_condition(
        conds, "Valid", "False", "UnknownSLATier", "x", T0 + timedelta(hours=1), 1
    )
    assert not changed and same == conds
    msg, changed = upsert_condition(
        conds, "Valid", "False", "UnknownLLMModel", "y", T0 + timedelta(hours=1), 2
    )
    assert changed and msg[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    flip, changed = upsert_condition(
        msg, "Valid", "True", "ReferencesResolved", "ok", T0 + timedelta(hours=2), 2
    )
    assert changed and flip[0]["lastTransitionTime"] == "2026-01-01T02:00:00Z"


def test_other_conditions_are_kept_sorted():
    conds, _ = upsert_condition([], "Valid", "True", "Ok", "", T0)
    conds, _ = upsert_condition(conds, "Applied", "False", "Pending", "", T0)
    assert [c["type"] for c in conds] == ["Applied", "Valid"]
