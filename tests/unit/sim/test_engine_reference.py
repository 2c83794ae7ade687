"""The engine's behaviour is pinned: fixed short slices of two scenarios give the same summary
metrics (counts exactly; TTFT/e2e quantiles, means, GPU-hours, USD, Jain within float
tolerance) as the engine before it was made faster (``data/engine_reference.json``).

Only the twin's own code is pinned: the scenarios are frozen copies
(``data/reference-*.yaml``) and the policies are this file's, so other changes to the
embedded scenarios or the planner do not move the reference. The reference is recorded by
``data/record_engine_reference.py``, which runs these cases on the engine, recorder, gateway
and workload files of commit 65b7862 (the engine before it was made faster) with the rest of
the tree as it is.

The policies drive what the hot path does differently: an HPA-like scaler on observed
utilisation (drains, revivals, kills), weighted routes drawn from the engine's random stream
with spill and the gateway throttling the heavy tenants (token and request buckets), on
the storm fleet spot pools under a storm in every region (interruptions, retries) with
deadline-only pool lanes, and a scheduler other than FCFS (every scheduler call made).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from llmfleet.api.plan import TenantThrottle
from llmfleet.sim.engine import Engine
from llmfleet.sim.policy import FleetTarget, Observation, ReplicaKey
from llmfleet.sim.scenario import Scenario, SpotStorm, load_scenario
from llmfleet.sim.workload import stream_workload

DATA = Path(__file__).parent / "data"
STORM_REGIONS = ("us-west", "sa-east", "ap-south", "eu-north")
CASES: dict[str, tuple[str, float, float, bool, dict[str, bool]]] = {
    # name: (scenario, traffic factor, days, spot storm in every region, policy options)
    "default-scaler": ("default", 0.1, 0.05, False, {}),
    "default-routed": ("default", 0.1, 0.05, False,
                       {"routes": True, "spill": True, "throttle": True}),
    "storm-lanes": ("storm", 0.5, 0.1, True, {"spot": True, "lanes": True}),
    "storm-routed": ("storm", 0.5, 0.06, True,
                     {"spot": True, "routes": True, "spill": True, "throttle": True}),
    "default-least-served": ("default", 0.1, 0.05, False, {"scheduler": True}),
}


class LeastServed:
    """A scheduler of this test's own (not FCFS, so the engine makes every call): admit the
    waiting request of the tenant served the fewest tokens here (oldest first among equals);
    refuse every 40th arrival of a tenant (``every-40th``)."""

    name = "least-served"

    def __init__(self) -> None:
        self.served: dict[str, float] = {}
        self.arrivals: dict[str, int] = {}
        self.running: set[int] = set()

    def on_arrival(self, request: Any, now: float) -> str | None:
        k = self.arrivals[request.tenant] = self.arrivals.get(request.tenant, 0) + 1
        return "every-40th" if k % 40 == 0 else None

    def pick(self, waiting: Any, now: float) -> Any:
        if not waiting:
            return None
        return min(waiting, key=lambda r: (self.served.get(r.tenant, 0.0), r.arrival))

    def on_service(self, request: Any, prompt_tokens: float, output_tokens: float,
                   now: float) -> None:
        self.running.add(request.id)
        self.served[request.tenant] = (self.served.get(request.tenant, 0.0) + prompt_tokens
                                       + 2.0 * output_tokens)

    def on_finish(self, request: Any, now: float) -> None:
        self.running.discard(request.id)


class Scripted:
    """A deterministic policy of this test's own (module doc): per (model, region) the
    pool with the most prefill tokens/s, HPA-like sizing on observed utilisation (out at
    once, in one replica a decision)."""

    name = "scripted"
    interval_seconds = 60.0

    def __init__(self, sc: Scenario, routes: bool = False, spill: bool = False,
                 throttle: bool = False, spot: bool = False, lanes: bool = False) -> None:
        self.snap = sc.snapshot()
        self.routes, self.spill, self.throttle, self.lanes = routes, spill, throttle, lanes
        self.keys: dict[tuple[str, str], list[tuple[ReplicaKey, int, bool]]] = {}
        for m in self.snap.models:
            for reg in sorted(self.snap.regions, key=lambda r: r.metadata.name):
                if m.spec.allowed_regions and reg.metadata.name not in m.spec.allowed_regions:
                    continue
                for want_spot in ((False, True) if spot else (False,)):
                    fits = sorted(
                        (-pr.prefill_tokens_per_second, pool.name, pr.max_concurrent_sequences)
                        for pool in reg.spec.pools for pr in m.spec.profiles
                        if pr.gpu_type == pool.gpu_type
                        and pr.gpus_per_replica <= pool.gpus_per_node
                        and (pool.capacity_type == "spot") == want_spot
                    )
                    if fits:
                        key = (m.metadata.name, reg.metadata.name, fits[0][1])
                        self.keys.setdefault(key[:2], []).append((key, fits[0][2], want_spot))
        self.rtt = {r.metadata.name: {lat.region: lat.rtt_ms for lat in r.spec.latencies}
                    for r in self.snap.regions}
        self.tier_of = {t.spec.tenant_id: t.spec.tier for t in self.snap.tenants}
        self.current: dict[ReplicaKey, int] = {}

    def decide(self, obs: Observation) -> FleetTarget:
        want: dict[ReplicaKey, int] = {}
        lanes: dict[tuple[str, str], str] = {}
        for keys in self.keys.values():
            for key, cap, is_spot in keys:
                st = obs.replicas.get(key)
                n = 1
                if st is not None and st.ready:
                    n = math.ceil((st.busy * st.ready + st.waiting / cap) / 0.6)
                    n = max(n, self.current.get(key, 1) - 1, 1)
                want[key] = n
                if self.lanes:
                    lanes[key[1:]] = "deadline" if is_spot else "interactive"
        self.current = want
        routes: dict[tuple[str, str, str], dict[str, float]] = {}
        if self.routes:
            for fk in sorted(obs.history, key=lambda f: (f.model, f.tier, f.origin)):
                hosts = sorted({r for m, r in self.keys if m == fk.model},
                               key=lambda r: (self.rtt[fk.origin].get(r, 1e9), r))
                others = [h for h in hosts if h != fk.origin]
                if fk.origin in hosts and others:
                    routes[(fk.model, fk.tier, fk.origin)] = {fk.origin: 0.7, others[0]: 0.3}
                elif others:
                    routes[(fk.model, fk.tier, fk.origin)] = {others[0]: 1.0}
        throttles: list[TenantThrottle] | None = None
        if self.throttle and obs.tenant_usage:
            per: dict[str, float] = {}
            for (tenant, _, _), v in obs.tenant_usage.items():
                per[tenant] = per.get(tenant, 0.0) + v
            cut = sorted(per.values())[len(per) * 3 // 4]
            throttles = [
                TenantThrottle(tenant=u, tier=self.tier_of[u], tokens_per_second=cut,
                               requests_per_second=2.0 if i % 2 else 0.0,
                               burst_tokens=60 * cut, max_concurrency=1000)
                for i, (u, v) in enumerate(sorted(per.items())) if v > cut
            ]
        return FleetTarget(replicas=want, routes=routes, throttles=throttles,
                           pool_lanes=lanes, spill=self.spill)


def _scenario(name: str, factor: float, days: float, storms: bool) -> Scenario:
    sc = load_scenario(DATA / f"reference-{name}.yaml")
    wl = sc.workload.model_copy(update={"scale": sc.workload.scale * factor, "days": days})
    upd: dict[str, Any] = {"workload": wl}
    if storms:
        upd["engine"] = sc.engine.model_copy(update={"spot_storms": [
            SpotStorm(region=r, start_hour=0.2, hours=1, rate_per_hour=4.0)
            for r in STORM_REGIONS
        ]})
    return sc.model_copy(update=upd)


def run_case(case: str) -> dict[str, Any]:
    """The summary (with ``per_tenant``) of one case, as JSON types."""
    name, factor, days, storms, case_opts = CASES[case]
    opts = dict(case_opts)
    sc = _scenario(name, factor, days, storms)
    snap = sc.snapshot()
    wl = stream_workload(sc, snap)
    schedulers = {"scheduler_factory": LeastServed} if opts.pop("scheduler", False) else {}
    rec = Engine(snap, wl, Scripted(sc, **opts), sc.engine, seed=sc.workload.seed,
                 **schedulers).run()
    got = rec.summary()
    got["per_tenant"] = rec.per_tenant()
    out: dict[str, Any] = json.loads(json.dumps(got, default=lambda x: None))
    return out


def _same(got: Any, want: Any, where: str) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for k in want:
            _same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _same(g, w, f"{where}[{i}]")
    elif isinstance(want, int):  # counts (and bools): exactly
        assert got == want, where
    elif isinstance(want, float):
        if math.isnan(want):
            assert math.isnan(float(got)), where
        else:
            assert float(got) == pytest.approx(want, rel=1e-9, abs=1e-12), where
    else:
        assert got == want, where


@pytest.mark.parametrize("case", sorted(CASES))
def test_summary_equals_the_reference_engine(case: str) -> None:
    reference = json.loads((DATA / "engine_reference.json").read_text())
    _same(run_case(case), reference[case], case)
