"""One bad object never stops planning: it is left out, named, and the rest is planned."""

from __future__ import annotations

from llmfleet.api.conditions import OBJECTS_EXCLUDED
from llmfleet.cycle.screen import object_problem, screen
from support.builders import planning_policy
from support.cycles import cycle, sample_snapshot


def _renamed(obj, name):
    return obj.model_copy(update={"metadata": obj.metadata.model_copy(update={"name": name})})


def test_a_model_no_plan_can_name_is_left_out_and_the_rest_is_planned():
    pol = planning_policy()
    snap = sample_snapshot()
    good = {m.name for m in snap.models}
    snap.models.append(_renamed(snap.models[0], "evil.model"))
    r = cycle(pol, snap)
    assert r.spec is not None and r.failure is None
    assert {x.model for x in r.spec.replicas} <= good
    (ex,) = r.excluded
    assert (ex.key.kind, ex.key.name, ex.field) == ("LLMModel", "evil.model", "metadata.name")
    assert "not a DNS-1123 label" in ex.message and "rename" in ex.message
    cond = next(c for c in r.conditions if c.type == OBJECTS_EXCLUDED)
    assert (cond.status, cond.reason) == ("True", "CannotBePlanned")
    assert "LLMModel ns/evil.model" in cond.message and "the rest is planned" in cond.message


def test_a_clean_fleet_says_nothing_is_excluded():
    r = cycle(planning_policy(), sample_snapshot())
    cond = next(c for c in r.conditions if c.type == OBJECTS_EXCLUDED)
    assert (cond.status, cond.reason) == ("False", "NoneExcluded") and r.excluded == ()


def test_a_quota_of_a_left_out_tier_is_left_out_too():
    pol = planning_policy()
    snap = sample_snapshot()
    tier = snap.tiers[0]
    broken = tier.model_copy(update={"spec": tier.spec.model_copy(update={"interactive": None, "deadline": None})})
    snap.tiers[0] = broken
    clean, excluded = screen(snap, pol)
    kinds = {(e.key.kind, e.field) for e in excluded}
    assert ("SLATier", "spec") in kinds
    quotas = [e for e in excluded if e.key.kind == "TenantQuota"]
    assert quotas and all(e.field == "spec.tier" and tier.name in e.message for e in quotas)
    assert tier.name not in {t.name for t in clean.tiers}
    assert all(q.spec.tier != tier.name for q in clean.tenants)
    assert object_problem(broken) is not None and object_problem(snap.models[0]) is None


def test_a_model_no_pool_can_run_is_left_out_not_the_fleets_plan():
    pol = planning_policy()
    snap = sample_snapshot()
    m = snap.models[1]
    prof = m.spec.profiles[0].model_copy(update={"gpu_type": "TPU-v9"})
    odd = _renamed(m, "tpu-only").model_copy(
        update={"spec": m.spec.model_copy(update={"profiles": [prof], "min_replicas_per_region": 1})}
    )
    snap.models.append(odd)
    r = cycle(pol, snap)
    assert r.spec is not None, r.failure  # without the screen: infeasible for the whole fleet
    (ex,) = r.excluded
    assert (ex.key.name, ex.field) == ("tpu-only", "spec.profiles")


def test_min_replicas_where_no_pool_fits_is_left_out_with_the_regions_named():
    pol = planning_policy()
    snap = sample_snapshot()
    # ap-northeast without its H100 pools; a 405B (H100 only) that must run everywhere
    i, tokyo = next((i, r) for i, r in enumerate(snap.regions) if r.name == "ap-northeast")
    pools = [p for p in tokyo.spec.pools if p.gpu_type != "H100-80GB"]
    snap.regions[i] = tokyo.model_copy(update={"spec": tokyo.spec.model_copy(update={"pools": pools})})
    big = next(m for m in snap.models if m.spec.allowed_regions)
    listed = _renamed(big, "big-everywhere").model_copy(
        update={"spec": big.spec.model_copy(update={
            "allowed_regions": sorted(r.name for r in snap.regions), "min_replicas_per_region": 1})}
    )  # fmt: skip
    snap.models.append(listed)
    r = cycle(pol, snap)
    assert r.spec is not None, r.failure
    (ex,) = r.excluded
    assert (ex.key.name, ex.field) == ("big-everywhere", "spec.minReplicasPerRegion")
    assert "ap-northeast" in ex.message and "allowedRegions" in ex.message


def test_with_no_allowed_regions_listed_a_region_no_pool_fits_just_hosts_none():
    pol = planning_policy()
    snap = sample_snapshot()
    # a Region whose only pool runs none of the models: every model still kept elsewhere
    odd = snap.regions[0]
    pool = odd.spec.pools[0].model_copy(update={"gpu_type": "TPU-v9"})
    snap.regions.append(_renamed(odd, "tpu-land").model_copy(
        update={"spec": odd.spec.model_copy(update={"pools": [pool], "latencies": []})}))  # fmt: skip
    r = cycle(pol, snap)
    assert r.spec is not None and r.excluded == (), (r.failure, r.excluded)
    assert not any(x.region == "tpu-land" and x.replicas for x in r.spec.replicas)
