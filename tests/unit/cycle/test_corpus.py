"""The planning cycle with generated objects in the fleet: whatever the apiserver would let in
(the corpus of the agreement test, every kind, valid after mutation), a cycle never raises,
and the sample fleet it was mixed into is still planned or the reason is said."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from llmfleet.api.loading import ManifestError, parse_object
from llmfleet.plan.instance import CurrentState
from support.builders import planning_policy
from support.corpus import manifests
from support.cycles import cycle, sample_snapshot

BUCKETS = {"Region": "regions", "LLMModel": "models", "SLATier": "tiers", "TenantQuota": "tenants"}
seen = {"objects": 0, "planned": 0, "failed": 0}


@settings(
    max_examples=40, derandomize=True, deadline=None, phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)  # fmt: skip
@given(st.lists(manifests(), min_size=1, max_size=4))
def test_a_cycle_with_generated_objects_present_never_raises(docs):
    snap = sample_snapshot()
    added = 0
    for kind, doc in docs:
        if kind not in BUCKETS:
            continue
        try:
            obj = parse_object(copy.deepcopy(doc), namespace="ns")
        except ManifestError:
            continue  # the apiserver rejects it too (the agreement test): never stored
        bucket = getattr(snap, BUCKETS[kind])
        bucket[:] = [o for o in bucket if o.name != obj.name] + [obj]
        added += 1
    seen["objects"] += added
    r = cycle(planning_policy(solver={"timeLimitSeconds": 5}), snap, CurrentState())
    # a plan, or one failure with a reason; never an exception
    assert (r.spec is not None) != (r.failure is not None)
    if r.failure is not None:
        seen["failed"] += 1
        assert r.failure.reason and r.failure.message
    else:
        seen["planned"] += 1
        assert r.plan is not None and r.conditions
    for e in r.excluded:
        assert e.field and e.message


def test_the_corpus_reached_the_cycle():
    # runs after the property above (file order): it must have added objects and planned some
    assert seen["objects"] > 10 and seen["planned"] > 0, seen
