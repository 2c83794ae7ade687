"""Spot storms (a piecewise-constant interruption hazard) and the embedded storm scenario."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from conftest import Fixed, hand_workload
from llmfleet.sim.engine import Engine, spot_interruption_delay, storm_windows
from llmfleet.sim.metrics import Recorder
from llmfleet.sim.scenario import (
    Scenario,
    ScenarioError,
    SpotStorm,
    known_scenarios,
    load_scenario,
)
from llmfleet.sim.workload import build_workload
from support.tiny import tiny_fleet

H = 3600.0


# ---------------------------------------------------------------- the hazard, by hand
def test_without_storms_the_delay_is_the_plain_exponential() -> None:
    assert spot_interruption_delay(0.7, 123.0, 0.05, []) == pytest.approx(0.7 * H / 0.05)


def test_the_delay_inverts_the_cumulative_hazard_across_the_window_edges() -> None:
    # base 0.1/h, storm [1 h, 2 h) at 2/h; H(0, t) = 0.1 t (t <= 1), 0.1 + 2 (t - 1) (1..2),
    # 2.1 + 0.1 (t - 2) after.
    w = [(1 * H, 2 * H, 2.0)]
    assert spot_interruption_delay(0.05, 0.0, 0.1, w) == pytest.approx(0.5 * H)  # before
    assert spot_interruption_delay(0.2, 0.0, 0.1, w) == pytest.approx(1.05 * H)  # inside
    assert spot_interruption_delay(3.0, 0.0, 0.1, w) == pytest.approx(11.0 * H)  # after
    # a node created inside the window: 0.5 h of storm left (1.0) then the base rate
    assert spot_interruption_delay(0.5, 1.5 * H, 0.1, w) == pytest.approx(0.25 * H)
    assert spot_interruption_delay(1.5, 1.5 * H, 0.1, w) == pytest.approx(5.5 * H)
    # a storm slower than the pool's own rate does not lower it
    assert spot_interruption_delay(0.2, 0.0, 0.1, [(0.0, 5 * H, 0.01)]) == pytest.approx(2 * H)


def test_overlapping_storms_take_the_highest_rate_and_zero_hazard_never_interrupts() -> None:
    w = [(0.0, 2 * H, 1.0), (1 * H, 3 * H, 4.0)]
    # H = 1 t on [0, 1), then 4/h on [1, 3): E = 3 -> 1 + 4 (t - 1) = 3 -> t = 1.5 h
    assert spot_interruption_delay(3.0, 0.0, 0.0, w) == pytest.approx(1.5 * H)
    # pool rate 0 outside the storms: past the storms' 9 units the node lives for ever
    assert spot_interruption_delay(9.5, 0.0, 0.0, w) == math.inf


def _fleet(base: float, n_max: int, extra_pool: bool = False) -> list[dict[str, Any]]:
    fleet = tiny_fleet(spot_rate=base)
    pools = fleet[0]["spec"]["pools"]
    pools[0].update(gpusPerNode=1, maxNodes=n_max)  # one replica per node
    if extra_pool:
        pools.append(dict(pools[0], name="spot2"))
        pools.append({k: v for k, v in pools[0].items() if k != "spotInterruptionRatePerHour"}
                     | {"name": "od", "capacityType": "on-demand"})
    return fleet


def _scenario(fleet: list[dict[str, Any]], storms: list[dict[str, Any]]) -> Scenario:
    return Scenario.model_validate({
        "name": "storm-test", "fleet": fleet,
        "engine": {"tick_seconds": 60, "spot_storms": storms},
        "workload": {"clients": [{"source": "azure:conv", "tenant": "a", "region": "r1"}],
                     "history_days": 0},
    })


def test_a_storm_without_pool_covers_every_spot_pool_of_its_region_only() -> None:
    sc = _scenario(_fleet(0.05, 10, extra_pool=True),
                   [{"region": "r1", "start_hour": 1, "hours": 2, "rate_per_hour": 3.0}])
    snap = sc.snapshot()
    pools = {(r.metadata.name, p.name): p for r in snap.regions for p in r.spec.pools}
    got = storm_windows(sc.engine.spot_storms, pools)
    assert got == {("r1", "gpu"): [(H, 3 * H, 3.0)], ("r1", "spot2"): [(H, 3 * H, 3.0)]}


@pytest.mark.parametrize(("storm", "message"), [
    ({"region": "nowhere"}, "engine.spot_storms[0].region 'nowhere': no such Region"),
    ({"region": "r1", "pool": "nope"}, "engine.spot_storms[0].pool 'nope': no such pool"),
    ({"region": "r1", "pool": "od"}, "engine.spot_storms[0].pool 'od': not a spot pool"),
])
def test_a_storm_naming_no_spot_pool_is_a_scenario_error(
    storm: dict[str, Any], message: str
) -> None:
    sc = _scenario(_fleet(0.05, 10, extra_pool=True),
                   [storm | {"start_hour": 1, "hours": 2, "rate_per_hour": 3.0}])
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sc.snapshot()


def test_a_storm_window_is_counted_in_hours_from_the_start() -> None:
    st = SpotStorm(region="r", start_hour=30, hours=3, rate_per_hour=2.0)
    assert st.window_seconds == (30 * H, 33 * H)
    with pytest.raises(ValueError, match="hours"):
        SpotStorm(region="r", start_hour=30, hours=0, rate_per_hour=2.0)


# ---------------------------------------------------------------- the engine, statistically
def _spy(rec: Recorder, clock: Callable[[], float], times: list[float]) -> None:
    inner = rec.spot_interruption

    def record() -> None:
        times.append(clock())
        inner()

    rec.spot_interruption = record  # type: ignore[method-assign]


def test_storm_interruptions_match_the_raised_rate_and_nothing_is_lost() -> None:
    # N spot nodes (one replica each, replaced at once when interrupted) form N Poisson
    # processes at the hazard h(t): interruptions in [a, b) ~ Poisson(N * integral h / 3600).
    # Storm r = 2/h over [10 h, 13 h), base 0.05/h, N = 40: 240 expected inside, 20 in the
    # 10 h before, 24 in the 12 h after. Tolerance: 4 standard deviations (sqrt(mean)).
    n, base, rate, a, b, end = 40, 0.05, 2.0, 10.0, 13.0, 25.0
    sc = _scenario(_fleet(base, 3 * n),
                   [{"region": "r1", "pool": "gpu", "start_hour": a, "hours": b - a,
                     "rate_per_hour": rate}])
    rng = np.random.default_rng(3)
    m = 16000  # a quarter over the whole run, the rest during the storm (requests in flight)
    arr = np.sort(np.concatenate([rng.uniform(0, end * H, m // 4),
                                  rng.uniform(a * H, b * H, m - m // 4)]))
    wl = hand_workload(arr.tolist(), rng.integers(50, 400, m).tolist(),
                       rng.integers(10, 200, m).tolist(), rng.integers(0, 2, m).tolist(),
                       duration=end * H)
    eng = Engine(sc.snapshot(), wl, Fixed(n), sc.engine, seed=11)
    times: list[float] = []
    _spy(eng.rec, lambda: eng.now, times)
    s = eng.run().summary()
    t = np.array(times) / H
    counts = {
        "before": (int(((t >= 0) & (t < a)).sum()), n * base * a),
        "storm": (int(((t >= a) & (t < b)).sum()), n * rate * (b - a)),
        "after": (int(((t >= b) & (t < end)).sum()), n * base * (end - b)),
    }
    for where, (got, want) in counts.items():
        assert abs(got - want) <= 4 * math.sqrt(want), (where, got, want)
    assert s["spot_interruptions"] == len(times)
    # interrupted requests were retried, and every request is accounted for
    assert s["retry_reasons"].get("spot-interruption", 0) > 0
    assert s["completed"] + s["rejected"] + s["in_flight_end"] == s["requests"] == m
    assert sum(s["reject_reasons"].values()) == s["rejected"]


# ---------------------------------------------------------------- the embedded scenario
def test_scenarios_are_found_by_name_and_an_unknown_name_lists_the_known_ones() -> None:
    assert {"default", "storm"} <= set(known_scenarios())
    assert load_scenario("storm").name == "storm"
    with pytest.raises(ScenarioError, match=r"stormy: .*embedded: default, .*storm"):
        load_scenario("stormy")
    with pytest.raises(FileNotFoundError):
        load_scenario("no/such/storm.yaml")


def test_the_storm_scenario_loads_and_its_workload_builds() -> None:
    sc = load_scenario("storm")
    snap = sc.snapshot()
    regions = {r.metadata.name: r for r in snap.regions}
    assert set(regions) == {"us-west", "sa-east", "ap-south", "eu-north"}
    for r in regions.values():  # symmetric RTTs to every other region
        rtt = {lat.region: lat.rtt_ms for lat in r.spec.latencies}
        assert set(rtt) == set(regions) - {r.metadata.name}
        for o, ms in rtt.items():
            back = {x.region: x.rtt_ms for x in regions[o].spec.latencies}
            assert back[r.metadata.name] == ms
    # the default's models (calibrated profiles; only where 405b may run differs) and tiers
    default = load_scenario()

    def docs(scenario: Scenario, kind: str) -> dict[str, Any]:
        return {d["metadata"]["name"]: {k: v for k, v in d["spec"].items()
                                        if k != "allowedRegions"}
                for d in scenario.fleet if d["kind"] == kind}

    assert docs(sc, "LLMModel") == docs(default, "LLMModel")
    assert docs(sc, "SLATier") == docs(default, "SLATier")
    assert sc.engine.spot_storms  # and snapshot() checked they name spot pools
    # the abuser: its peers' (same model and tier) weight and budgets, 10x their rate
    tq = {t.spec.tenant_id: t.spec for t in snap.tenants}
    abuser = next(t for t in tq if t.startswith("abuser"))
    peers = [s for t, s in tq.items() if t != abuser and s.tier == tq[abuser].tier
             and s.models == tq[abuser].models]
    assert peers and all(p.weight == tq[abuser].weight for p in peers)
    assert all(p.budgets == tq[abuser].budgets for p in peers)
    wl = build_workload(sc, snap, days=0.05)
    assert len(wl) > 0 and wl.duration == pytest.approx(0.05 * 86400)
    assert set(wl.regions) == set(regions)
    assert abuser in wl.tenants
