"""The short-term correction's pure core (llmfleet.cycle.correction): the demand and load
rules, placement (serving pool, the region's other pools, spill within spillRttMs, spot only
where the tier allows it), the plan as the floor, and the FleetPlanSpec it turns into."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from llmfleet.api.loading import parse_object, snapshot_of
from llmfleet.api.policy import CorrectionSettings
from llmfleet.cycle.correction import (
    Addition,
    CellLoad,
    Correction,
    CorrectionFleet,
    CorrectionInputs,
    cell_loads,
    correct,
    corrected_spec,
    plan_replicas,
    plan_routes,
)
from llmfleet.forecast.types import FlowKey
from llmfleet.plan.capacity import replica_throughput
from support.plans import fleet_plan
from support.tiny import tiny_fleet

KEY = ("m", "r1", "gpu")
CELL = ("m", "r1")
FAST = FlowKey(model="m", origin="r1", tier="fast")
SAFE = FlowKey(model="m", origin="r1", tier="safe")
BATCH = FlowKey(model="m", origin="r1", tier="batch")
PROMPT, OUTPUT = 300, 60  # tokens a request


def _pool(name: str, *, max_nodes: int = 10, price: float = 8.0, gpus: int = 8,
          spot: bool = False) -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "gpuType": "G", "gpusPerNode": gpus,
                         "pricePerNodeHour": price, "maxNodes": max_nodes,
                         "provisioningSeconds": 60}
    if spot:
        p.update(capacityType="spot", spotInterruptionRatePerHour=0.1)
    return p


def _fleet(
    regions: dict[str, list[dict[str, Any]]] | None = None,
    rtt: dict[tuple[str, str], float] | None = None,
    models: dict[str, int] | None = None,
) -> CorrectionFleet:
    """The tiny fleet (one GPU type G; 2000/400 tok/s, 16 sequences a replica; tiers fast,
    batch and ``safe``, an interactive tier that forbids spot) with ``regions`` -> pools,
    symmetric round trips ``rtt`` and ``models`` -> GPUs a replica (default: m, 1 GPU)."""
    docs = tiny_fleet(prefill=2000.0, decode=400.0, max_seqs=16, target=0.7)
    region = next(d for d in docs if d["kind"] == "Region")
    model = next(d for d in docs if d["kind"] == "LLMModel")
    fast = next(d for d in docs if d["kind"] == "SLATier" and d["metadata"]["name"] == "fast")
    others = [d for d in docs if d["kind"] not in ("Region", "LLMModel")]
    out: list[dict[str, Any]] = []
    for name, pools in (regions or {"r1": [_pool("gpu")]}).items():
        r = copy.deepcopy(region)
        r["metadata"]["name"] = name
        r["spec"]["pools"] = pools
        lat = [{"region": b if a == name else a, "rttMs": ms}
               for (a, b), ms in (rtt or {}).items() if name in (a, b)]
        if lat:
            r["spec"]["latencies"] = lat
        out.append(r)
    for name, gpus in (models or {"m": 1}).items():
        m = copy.deepcopy(model)
        m["metadata"]["name"] = name
        m["spec"]["servedModelName"] = name
        m["spec"]["profiles"][0]["gpusPerReplica"] = gpus
        out.append(m)
    safe = copy.deepcopy(fast)
    safe["metadata"]["name"] = "safe"
    safe["spec"].update(spotAllowed=False, maxSpotFraction=0.0)
    out += [*others, safe]
    return CorrectionFleet.of(snapshot_of(parse_object(d, namespace="default") for d in out))


def _demand(fleet: CorrectionFleet, n: float, tier: str = "fast",
            key: tuple[str, str, str] = KEY) -> tuple[float, float, float]:
    """(requests, prompt, output)/s that need ``n`` replicas of ``key``'s profile."""
    cap = replica_throughput(fleet.profiles[key], fleet.tiers[tier],
                             PROMPT / (PROMPT + OUTPUT), PROMPT + OUTPUT)
    assert cap > 0
    rps = n * cap / (PROMPT + OUTPUT)
    return (rps, rps * PROMPT, rps * OUTPUT)


def _run(fleet: CorrectionFleet, plan: dict, wanted: dict | None = None, *,
         cells: dict | None = None, recent: dict | None = None, routes: dict | None = None,
         after_plan: bool = False, **settings: Any) -> Correction:
    return correct(CorrectionInputs(
        settings=CorrectionSettings(**settings), fleet=fleet, plan=plan,
        routes=routes or {}, wanted=dict(plan) if wanted is None else wanted,
        cells=cells or {}, recent=recent or {}, after_plan=after_plan))


# --- the fleet as the correction reads it -----------------------------------------------

def test_the_fleet_view_prices_replicas_and_knows_spot_pools_and_round_trips():
    f = _fleet({"r1": [_pool("od"), _pool("sp", spot=True, price=2.0, max_nodes=3)],
                "r2": [_pool("big", gpus=16, price=12.0)]},
               rtt={("r1", "r2"): 70.0}, models={"m": 2})
    assert set(f.profiles) == {("m", "r1", "od"), ("m", "r1", "sp"), ("m", "r2", "big")}
    assert f.spot_pools == frozenset({("r1", "sp")})
    assert f.pool_gpus == {("r1", "od"): 80, ("r1", "sp"): 24, ("r2", "big"): 160}
    assert f.replica_price == {("m", "r1", "od"): 2.0, ("m", "r1", "sp"): 0.5,
                               ("m", "r2", "big"): 1.5}
    assert f.rtt_ms == {"r1": {"r2": 70.0}, "r2": {"r1": 70.0}}
    assert f.slots(("m", "r1", "od")) == 16 and f.slots(("x", "r1", "od")) == 0
    assert not f.tiers["safe"].spot_allowed and f.tiers["batch"].kind == "deadline"


# --- demand rule ---------------------------------------------------------------------------

def test_a_burst_needing_5_2_replicas_with_2_there_adds_4():
    f = _fleet()
    c = _run(f, {KEY: 2}, cells={CELL: CellLoad(ready=2, loading=0, slots=32)},
             recent={FAST: _demand(f, 5.2)})
    assert c.replicas == {KEY: 6}
    assert c.additions == (Addition("m", "r1", "gpu", 4, "demand",
                                    "the last 60s need 5.2 replicas, 2 ready or loading"),)
    assert c.unplaced == ()
    assert c.changed and c.above({KEY: 2}) == 4


def test_demand_within_the_margin_changes_nothing_and_just_beyond_it_adds_the_ceiling():
    f = _fleet()
    cells = {CELL: CellLoad(ready=2, loading=0, slots=32)}
    within = _run(f, {KEY: 2}, cells=cells, recent={FAST: _demand(f, 2.15)})  # +7.5% < 10%
    assert within.replicas == {KEY: 2} and not within.changed
    assert within.summary() == "nothing to add"
    beyond = _run(f, {KEY: 2}, cells=cells, recent={FAST: _demand(f, 2.3)})  # +15%
    assert beyond.replicas == {KEY: 3}
    # a wider margin: 2.9 is within 50% of 2, 3.1 beyond it and adds ceil(1.1) = 2
    assert not _run(f, {KEY: 2}, cells=cells, recent={FAST: _demand(f, 2.9)},
                    demand_margin=0.5).changed
    assert _run(f, {KEY: 2}, cells=cells, recent={FAST: _demand(f, 3.1)},
                demand_margin=0.5).replicas == {KEY: 4}


def test_deadline_work_never_triggers_the_demand_rule():
    f = _fleet()
    huge = (100.0, 1e6, 1e5)
    assert not _run(f, {KEY: 2}, recent={BATCH: huge}).changed
    # beside an interactive flow it adds nothing to that flow's need
    c = _run(f, {KEY: 2}, recent={BATCH: huge, FAST: _demand(f, 5.2)})
    assert c.replicas == {KEY: 6}


def test_a_flow_without_requests_or_tokens_or_of_an_unknown_tier_is_ignored():
    f = _fleet()
    rps, prompt, out = _demand(f, 5.2)
    for flow in [(0.0, prompt, out), (rps, 0.0, 0.0)]:
        assert not _run(f, {KEY: 2}, recent={FAST: flow}).changed
    unknown = FlowKey(model="m", origin="r1", tier="nope")
    assert not _run(f, {KEY: 2}, recent={unknown: (rps, prompt, out)}).changed


def test_replicas_loading_count_as_there_and_so_do_wanted_ones_not_started_yet():
    f = _fleet()
    loading = {CELL: CellLoad(ready=2, loading=3, slots=32)}
    assert not _run(f, {KEY: 2}, {KEY: 5}, cells=loading,
                    recent={FAST: _demand(f, 5.0)}).changed
    c = _run(f, {KEY: 2}, {KEY: 5}, cells=loading, recent={FAST: _demand(f, 6.4)})
    assert c.replicas == {KEY: 7}  # 5 there, ceil(6.4 - 5) = 2 more
    assert c.additions[0].detail == "the last 60s need 6.4 replicas, 5 ready or loading"
    # started beyond what is wanted (loading from an earlier correction) counts too
    assert not _run(f, {KEY: 2}, cells=loading, recent={FAST: _demand(f, 5.0)}).changed
    # wanted beyond what has started counts (no cell load at all: the wanted ones)
    assert not _run(f, {KEY: 2}, {KEY: 5}, recent={FAST: _demand(f, 5.0)}).changed
    assert _run(f, {KEY: 2}, {KEY: 5}, recent={FAST: _demand(f, 6.4)}).replicas == {KEY: 7}


def _two() -> CorrectionFleet:
    return _fleet({"r1": [_pool("gpu")], "r2": [_pool("gpu")]}, rtt={("r1", "r2"): 50.0})


R2 = ("m", "r2", "gpu")


def test_a_flow_is_split_along_the_plans_routes_between_serving_regions():
    f = _two()
    routes = plan_routes(fleet_plan(routing={("m", "fast", "r1"): {"r1": 0.75, "r2": 0.25}}))
    c = _run(f, {KEY: 2, R2: 1}, routes=routes, recent={FAST: _demand(f, 10.0)})
    # r1 needs 7.5 of 2: +6; r2 needs 2.5 of 1: +2
    assert c.replicas == {KEY: 8, R2: 3}
    assert [(a.region, a.replicas, a.rule, a.detail) for a in c.additions] == [
        ("r1", 6, "demand", "the last 60s need 7.5 replicas, 2 ready or loading"),
        ("r2", 2, "demand", "the last 60s need 2.5 replicas, 1 ready or loading"),
    ]
    # fractions are shares of their sum
    half = {("m", "fast", "r1"): {"r1": 0.375, "r2": 0.125}}
    assert _run(f, {KEY: 2, R2: 1}, routes=half,
                recent={FAST: _demand(f, 10.0)}).replicas == {KEY: 8, R2: 3}


def test_a_flow_routed_away_from_its_origin_needs_replicas_only_where_it_goes():
    f = _two()
    routes = plan_routes(fleet_plan(routing={("m", "fast", "r1"): {"r1": 0.0, "r2": 1.0}}))
    c = _run(f, {KEY: 2, R2: 1}, routes=routes, recent={FAST: _demand(f, 4.5)})
    assert c.replicas == {KEY: 2, R2: 5}
    # without routes a flow is served where it comes from
    from_r2 = FlowKey(model="m", origin="r2", tier="fast")
    assert _run(f, {KEY: 2, R2: 1}, recent={from_r2: _demand(f, 4.5)}).replicas == {
        KEY: 2, R2: 5}


def test_spill_placed_for_one_region_is_not_counted_as_the_spill_regions_own():
    # r1 is full (one node: 8 replicas) and needs 10.5: 3 more go to r2, 50 ms away.
    # r2's own flow needs 3.5 with 1 there: 3 more. r2 should end at 1 + 3 + 3 = 7; the
    # answer must not depend on which region's name sorts first.
    f = _fleet({"r1": [_pool("gpu", max_nodes=1)], "r2": [_pool("gpu")]},
               rtt={("r1", "r2"): 50.0})
    from_r2 = FlowKey(model="m", origin="r2", tier="fast")
    c = _run(f, {KEY: 8, R2: 1}, recent={FAST: _demand(f, 10.5), from_r2: _demand(f, 3.5)})
    assert c.replicas == {KEY: 8, R2: 7}


# --- placement -----------------------------------------------------------------------------

def test_a_model_at_zero_in_a_region_starts_in_its_cheapest_pool_per_replica():
    f = _fleet({"r1": [_pool("dear", price=16.0), _pool("cheap", price=8.0),
                       _pool("big", gpus=16, price=20.0)]})  # 2.0, 1.0, 1.25 per replica
    c = _run(f, {}, recent={FAST: _demand(f, 2.5, key=("m", "r1", "cheap"))})
    assert c.replicas == {("m", "r1", "cheap"): 3}
    # where the model runs already, its pool with most replicas serves, however dear
    c = _run(f, {("m", "r1", "dear"): 2, ("m", "r1", "cheap"): 1},
             recent={FAST: _demand(f, 5.5, key=("m", "r1", "dear"))})
    assert c.replicas == {("m", "r1", "dear"): 5, ("m", "r1", "cheap"): 1}  # ceil(5.5 - 3)


def test_a_pool_at_max_nodes_overflows_to_the_regions_other_pools_cheapest_first():
    f = _fleet({"r1": [_pool("a", max_nodes=1), _pool("b", price=16.0), _pool("c", price=12.0)]})
    a, b, cc = ("m", "r1", "a"), ("m", "r1", "b"), ("m", "r1", "c")
    c = _run(f, {a: 6}, recent={FAST: _demand(f, 10.5, key=a)})
    # ceil(10.5 - 6) = 5: 2 fill a's 8 GPUs, 3 go to c (1.5 per replica) before b (2.0)
    assert c.replicas == {a: 8, cc: 3}
    assert b not in c.replicas
    assert [(x.pool, x.replicas, x.rule) for x in c.additions] == [("a", 2, "demand"),
                                                                  ("c", 3, "demand")]


def test_a_pools_room_counts_every_model_wanted_there_and_the_gpus_a_replica_takes():
    f = _fleet({"r1": [_pool("a", max_nodes=1), _pool("b", price=16.0)]},
               models={"m": 2, "m2": 1})
    a, b = ("m", "r1", "a"), ("m", "r1", "b")
    # a: 8 GPUs, m2 takes 3, m's 2 take 4: room for none more of m (2 GPUs each)... but 1 GPU
    c = _run(f, {a: 2, ("m2", "r1", "a"): 3}, recent={FAST: _demand(f, 4.5, key=a)})
    assert c.replicas == {a: 2, ("m2", "r1", "a"): 3, b: 3}
    c = _run(f, {a: 1, ("m2", "r1", "a"): 2}, recent={FAST: _demand(f, 4.5, key=a)})
    assert c.replicas == {a: 3, ("m2", "r1", "a"): 2, b: 2}


def _spill_fleet() -> CorrectionFleet:
    return _fleet({"r1": [_pool("gpu", max_nodes=1)], "r2": [_pool("gpu")],
                   "r3": [_pool("gpu", max_nodes=1, gpus=2)], "r4": [_pool("gpu")],
                   "r5": [_pool("gpu")]},
                  rtt={("r1", "r2"): 100.0, ("r1", "r3"): 40.0, ("r1", "r4"): 300.0})


def test_a_full_region_spills_to_the_nearest_regions_within_spill_rtt_never_beyond():
    f = _spill_fleet()
    c = _run(f, {KEY: 8}, recent={FAST: _demand(f, 13.5)})
    # ceil(13.5 - 8) = 6: r1 is full; r3 (40 ms) holds 2, r2 (100 ms) the other 4;
    # r4 (300 ms) is beyond 250 ms and r5 has no known round trip from r1
    assert c.replicas == {KEY: 8, ("m", "r3", "gpu"): 2, ("m", "r2", "gpu"): 4}
    assert c.unplaced == ()
    assert [(a.region, a.replicas) for a in c.additions] == [("r3", 2), ("r2", 4)]
    tight = _run(f, {KEY: 8}, recent={FAST: _demand(f, 13.5)}, spill_rtt_ms=50)
    assert tight.replicas == {KEY: 8, ("m", "r3", "gpu"): 2}
    assert tight.unplaced == ((CELL, 4),)
    wide = _run(f, {KEY: 8}, recent={FAST: _demand(f, 13.5)}, spill_rtt_ms=40)
    assert wide.replicas[("m", "r3", "gpu")] == 2  # the bound is inclusive


def test_a_burst_beyond_every_pool_in_reach_is_reported_unplaced():
    f = _fleet({"r1": [_pool("gpu", max_nodes=1)]})
    c = _run(f, {KEY: 6}, recent={FAST: _demand(f, 12.5)})
    assert c.replicas == {KEY: 8}
    assert c.unplaced == ((CELL, 5),)
    assert c.summary() == ("+2 m in r1/gpu (demand: the last 60s need 12.5 replicas, "
                           "6 ready or loading); 5 m in r1 found no room")
    assert c.changed and c.above({KEY: 6}) == 2
    # nothing placed at all: unplaced, no addition, and changed says so
    full = _run(f, {KEY: 8}, recent={FAST: _demand(f, 12.5)})
    assert full.replicas == {KEY: 8} and full.additions == ()
    assert full.unplaced == ((CELL, 5),) and not full.changed
    assert full.summary() == "5 m in r1 found no room"


def _spot() -> CorrectionFleet:
    return _fleet({"r1": [_pool("od", max_nodes=1), _pool("sp", price=2.0, spot=True)]})


OD, SP = ("m", "r1", "od"), ("m", "r1", "sp")


def test_a_tier_that_forbids_spot_never_gets_spot_pools():
    f = _spot()
    # a tier that allows spot starts in the cheaper spot pool
    assert _run(f, {}, recent={FAST: _demand(f, 2.5, key=SP)}).replicas == {SP: 3}
    # one that forbids it, on demand, even with replicas of the model on spot already
    assert _run(f, {}, recent={SAFE: _demand(f, 2.5, "safe", OD)}).replicas == {OD: 3}
    c = _run(f, {SP: 4}, recent={SAFE: _demand(f, 2.5, "safe", OD)})
    assert c.replicas == {SP: 4, OD: 3}
    # on-demand full: what is left finds no room rather than going to spot
    c = _run(f, {OD: 6}, recent={SAFE: _demand(f, 10.5, "safe", OD)})
    assert c.replicas == {OD: 8} and c.unplaced == ((CELL, 3),)


def test_a_cell_serving_a_tier_that_forbids_spot_adds_only_on_demand():
    f = _spot()
    c = _run(f, {}, recent={FAST: _demand(f, 1.25, key=SP), SAFE: _demand(f, 1.5, "safe", OD)})
    assert c.replicas == {OD: 3}  # ceil(2.75)


# --- load rule -----------------------------------------------------------------------------

def _hot(ready: int = 4, loading: int = 0, running: float = 64.0, waiting: float = 40.0,
         slots: int | None = None) -> dict:
    return {CELL: CellLoad(ready=ready, loading=loading, running=running, waiting=waiting,
                           slots=16 * ready if slots is None else slots)}


def test_slots_and_queue_above_utilisation_add_what_brings_it_under():
    f = _fleet()
    c = _run(f, {KEY: 4}, cells=_hot())
    # u = (64 + 40) / 64 = 1.625: ceil(4 x 1.625 / 0.9) = 8, 4 more
    assert c.replicas == {KEY: 8}
    assert c.additions == (Addition("m", "r1", "gpu", 4, "load",
                                    "slots plus queue at 162% of 64 with 4 ready"),)
    # the same from the observed replicas and vLLM's counts
    cells = cell_loads(f, {KEY: 4}, {KEY: 4}, {CELL: 64.0}, {CELL: 40.0})
    assert cells == _hot()
    assert _run(f, {KEY: 4}, cells=cells).replicas == {KEY: 8}


def test_just_above_utilisation_adds_one_and_at_it_nothing():
    f = _fleet()
    c = _run(f, {KEY: 10}, cells=_hot(ready=10, running=145.0, waiting=0.0))
    assert c.replicas == {KEY: 11}  # u = 0.906: ceil(10.07) = 11
    assert not _run(f, {KEY: 10}, cells=_hot(ready=10, running=144.0, waiting=0.0)).changed
    assert _run(f, {KEY: 10}, cells=_hot(ready=10, running=144.0, waiting=0.0),
                utilisation=0.8).replicas == {KEY: 12}  # ceil(10 x 0.9 / 0.8) = 12


def test_the_load_target_counts_what_is_wanted_already():
    f = _fleet()
    assert _run(f, {KEY: 4}, {KEY: 7}, cells=_hot()).replicas == {KEY: 8}
    assert not _run(f, {KEY: 4}, {KEY: 8}, cells=_hot()).changed


def test_the_load_rule_waits_while_replicas_load_or_none_is_ready():
    f = _fleet()
    assert not _run(f, {KEY: 5}, cells=_hot(loading=1)).changed
    assert not _run(f, {KEY: 4}, cells=_hot(ready=0, slots=0)).changed
    assert not _run(f, {KEY: 4}, cells=_hot(slots=0)).changed


def test_right_after_a_plan_only_the_demand_rule_runs():
    f = _fleet()
    recent = {FAST: _demand(f, 6.5)}
    c = _run(f, {KEY: 4}, cells=_hot(), recent=recent, after_plan=True)
    assert c.replicas == {KEY: 7}  # ceil(6.5 - 4) = 3
    assert [a.rule for a in c.additions] == ["demand"]
    assert not _run(f, {KEY: 4}, cells=_hot(), after_plan=True).changed
    # otherwise both: demand to 7, then load to 8 (counting the demand's 3)
    both = _run(f, {KEY: 4}, cells=_hot(), recent=recent)
    assert both.replicas == {KEY: 8}
    assert [(a.rule, a.replicas) for a in both.additions] == [("demand", 3), ("load", 1)]
    assert both.above({KEY: 4}) == 4


def test_the_load_rule_places_like_the_demand_rule():
    f = _fleet({"r1": [_pool("a", max_nodes=1), _pool("b", price=16.0)]})
    a, b = ("m", "r1", "a"), ("m", "r1", "b")
    c = _run(f, {a: 4}, cells=_hot())
    assert c.replicas == {a: 8}
    c = _run(f, {a: 6}, cells=_hot(ready=6, running=96.0, waiting=60.0))
    # u = 156 / 96 = 1.625: ceil(6 x 1.625 / 0.9) = 11: 2 in a, 3 in b
    assert c.replicas == {a: 8, b: 3}
    assert [(x.pool, x.replicas, x.rule) for x in c.additions] == [("a", 2, "load"),
                                                                  ("b", 3, "load")]


# --- the plan is the floor -----------------------------------------------------------------

def test_never_fewer_than_the_plan():
    f = _two()
    c = _run(f, {KEY: 3, R2: 0}, {KEY: 1, R2: 2})
    assert c.replicas == {KEY: 3, R2: 2}  # zeros left out, the larger of plan and wanted
    assert c.additions == () and c.unplaced == () and not c.changed
    assert c.above({KEY: 3}) == 2 and c.above({KEY: 3, R2: 2}) == 0


def test_disabled_the_plan_alone_counts():
    f = _fleet()
    c = _run(f, {KEY: 3}, {KEY: 1}, cells=_hot(), recent={FAST: _demand(f, 50.0)},
             enabled=False)
    assert c == Correction(replicas={KEY: 3})
    assert c.summary() == "nothing to add"


def test_additions_to_one_pool_by_one_rule_are_merged():
    # r1 and r3 both full and spill to r2: one demand addition to r2 with the sum
    f = _fleet({"r1": [_pool("gpu", max_nodes=1)], "r2": [_pool("gpu")],
                "r3": [_pool("gpu", max_nodes=1)]},
               rtt={("r1", "r2"): 50.0, ("r3", "r2"): 50.0})
    r3 = FlowKey(model="m", origin="r3", tier="fast")
    c = _run(f, {KEY: 8, ("m", "r3", "gpu"): 8},
             recent={FAST: _demand(f, 9.5), r3: _demand(f, 10.5)})
    assert c.replicas == {KEY: 8, ("m", "r3", "gpu"): 8, R2: 5}
    (add,) = c.additions
    assert (add.region, add.pool, add.replicas, add.rule) == ("r2", "gpu", 5, "demand")
    assert str(add) == ("+5 m in r2/gpu (demand: the last 60s need 10.5 replicas, "
                        "8 ready or loading)")


# --- cell loads and the plan's figures -----------------------------------------------------

def test_cell_loads_sum_pools_and_count_slots_of_ready_replicas_only():
    f = _fleet({"r1": [_pool("a"), _pool("b")], "r2": [_pool("gpu")]}, models={"m": 1})
    a, b = ("m", "r1", "a"), ("m", "r1", "b")
    cells = cell_loads(f, ready={a: 2, b: 1, R2: 3}, started={a: 3, b: 1, R2: 2},
                       running={CELL: 5.0, ("m", "r9"): 1.0}, waiting={("m", "r2"): 2.0})
    assert cells == {
        CELL: CellLoad(ready=3, loading=1, running=5.0, waiting=0.0, slots=48),
        ("m", "r2"): CellLoad(ready=3, loading=0, running=0.0, waiting=2.0, slots=48),
    }
    # started but not ready: loading, no slots; a pool the model cannot run: no slots
    only = cell_loads(f, {}, {a: 2, ("x", "r1", "a"): 1}, {}, {})
    assert only == {CELL: CellLoad(ready=0, loading=2), ("x", "r1"): CellLoad(ready=0, loading=1)}
    assert cell_loads(f, {("x", "r1", "a"): 2}, {}, {}, {})[("x", "r1")].slots == 0


def test_plan_replicas_and_routes_leave_zeros_out():
    spec = fleet_plan(
        replicas={KEY: 2, R2: 0, ("m2", "r1", "gpu"): 1},
        routing={("m", "fast", "r1"): {"r1": 0.7, "r2": 0.3, "r3": 0.0},
                 ("m", "fast", "r2"): {"r2": 0.0}},
    )
    assert plan_replicas(spec) == {KEY: 2, ("m2", "r1", "gpu"): 1}
    assert plan_routes(spec) == {("m", "fast", "r1"): {"r1": 0.7, "r2": 0.3}}


# --- the FleetPlanSpec the controller actuates ---------------------------------------------

def test_corrected_spec_carries_the_replicas_and_raises_nodes_to_pack_them():
    f = _fleet({"r1": [_pool("gpu"), _pool("other")]}, models={"m": 2})  # 4 replicas a node
    other = ("m", "r1", "other")
    spec = fleet_plan(nodes={("r1", "gpu"): 1, ("r1", "other"): 3}, replicas={KEY: 2},
                      routing={("m", "fast", "r1"): {"r1": 1.0}}, gpu_type="G")
    c = Correction(replicas={KEY: 9, other: 2})
    out = corrected_spec(spec, c, f, {("r1", "gpu"): 10, ("r1", "other"): 10})
    assert [(r.model, r.region, r.pool, r.replicas) for r in out.replicas] == [
        ("m", "r1", "gpu", 9), ("m", "r1", "other", 2)]
    # 9 x 2 GPUs on 8-GPU nodes: 3 nodes; "other" needs 1 but keeps the plan's 3
    assert {(n.pool, n.nodes) for n in out.nodes} == {("gpu", 3), ("other", 3)}
    assert out.routing == spec.routing and out.policy == spec.policy
    assert out.made_at == spec.made_at and out.inputs_digest == spec.inputs_digest
    # at most max_nodes, never below the plan's own nodes
    capped = corrected_spec(spec, c, f, {("r1", "gpu"): 2, ("r1", "other"): 1})
    assert {(n.pool, n.nodes) for n in capped.nodes} == {("gpu", 2), ("other", 3)}
    # a plan replica the correction does not name keeps nothing
    gone = corrected_spec(spec, Correction(replicas={other: 1}), f, {})
    assert [(r.pool, r.replicas) for r in gone.replicas] == [("gpu", 0), ("other", 1)]
    assert {(n.pool, n.nodes) for n in gone.nodes} == {("gpu", 1), ("other", 3)}


def test_corrected_spec_packs_first_fit_decreasing_not_by_gpu_count():
    f = _fleet({"r1": [_pool("gpu")]}, models={"m": 3, "m2": 2})
    spec = fleet_plan(nodes={("r1", "gpu"): 0}, gpu_type="G")
    # five 3-GPU replicas: two a node (6 of 8 GPUs): 3 nodes, though 15 GPUs fit in 2
    out = corrected_spec(spec, Correction(replicas={("m", "r1", "gpu"): 5}), f,
                         {("r1", "gpu"): 10})
    assert out.nodes[0].nodes == 3
    # with four 2-GPU replicas beside them the 2s fill the gaps: 3+3+2, 3+3+2, 3+2+2: 3
    mixed = Correction(replicas={("m", "r1", "gpu"): 5, ("m2", "r1", "gpu"): 4})
    assert corrected_spec(spec, mixed, f, {("r1", "gpu"): 10}).nodes[0].nodes == 3
    # a replica of a model the pool cannot run takes no node
    none = Correction(replicas={("x", "r1", "gpu"): 4})
    assert corrected_spec(spec, none, f, {("r1", "gpu"): 10}).nodes[0].nodes == 0


@pytest.mark.parametrize("ready", [2, 3])
def test_corrected_spec_of_a_correction_round_trips_through_plan_replicas(ready: int):
    f = _fleet()
    spec = fleet_plan(nodes={("r1", "gpu"): 1}, replicas={KEY: ready}, gpu_type="G")
    c = _run(f, plan_replicas(spec), recent={FAST: _demand(f, 10.5)})
    out = corrected_spec(spec, c, f, {("r1", "gpu"): 10})
    assert plan_replicas(out) == c.replicas == {KEY: 11}
    assert out.nodes[0].nodes == 2  # 11 one-GPU replicas on 8-GPU nodes
