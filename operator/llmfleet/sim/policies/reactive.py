"""Reactive threshold autoscaler (HPA/KEDA-like), per (model, region).

Every ``interval_seconds`` (60 s), for each (model, region) with replicas ``N`` (ready),
mean slot utilisation ``b`` over the interval and ``q`` waiting requests:

    u = b + q / (N C)            desired = ceil(N u / target)      (HPA's formula)

scale-out at once; scale-in only to the largest desired over the last
``stabilization_seconds`` (300 s, HPA's default). Floors (not for a batch-only lane): the
model's ``minReplicasPerRegion``, and 1 where demand was seen in the last step that this
region serves: from this region, or from an origin that cannot host the model and whose
nearest region (by RTT) that can is this one -- the twin routes such a flow there, so a floor
counting only local demand would leave it no replica at all. Deadline work:
``ceil(backlog tokens / (replica tokens/s x deadline/4))`` extra replicas in the region with
the cheapest pool. Replicas go to the pool with the most tokens/s per USD (on-demand only
unless ``spot`` is set).
"""

from __future__ import annotations

import math
from collections import deque

from llmfleet.sim.policies.sizing import best_pool, throughput
from llmfleet.sim.policy import FleetTarget, Observation, PoolKey, ReplicaKey
from llmfleet.sim.scenario import Scenario


class ReactiveThreshold:
    name = "reactive"
    interval_seconds = 60.0

    def __init__(self, scenario: Scenario, workload: object = None, target: float = 0.6,
                 stabilization_seconds: float = 300.0, spot: bool = False,
                 lane: str | None = None) -> None:
        self.snap = scenario.snapshot()
        self.target_util = target
        self.stab = stabilization_seconds
        self.lane = lane
        self.regions = sorted(r.metadata.name for r in self.snap.regions)
        self.keys: dict[tuple[str, str], ReplicaKey] = {}
        self.max_seqs: dict[ReplicaKey, int] = {}
        self.rate: dict[ReplicaKey, float] = {}
        self.floor: dict[ReplicaKey, int] = {}
        deadline_tiers = [t for t in self.snap.tiers if t.spec.type == "deadline"]
        for m in self.snap.models:
            for region in self.regions:
                found = best_pool(self.snap, m, region, spot)
                if found is None:
                    continue
                key = (m.metadata.name, region, found[0])
                self.keys[(m.metadata.name, region)] = key
                self.max_seqs[key] = found[1].max_concurrent_sequences
                self.rate[key] = (throughput(found[1], deadline_tiers[0]) if deadline_tiers
                                  else 1.0)
                self.floor[key] = m.spec.min_replicas_per_region
        self.history: dict[ReplicaKey, deque[tuple[float, int]]] = {}
        self.current: dict[ReplicaKey, int] = {}
        self.serving = self._serving_regions()
        self.tier_kind = {t.metadata.name: t.spec.type for t in self.snap.tiers}

    def _serving_regions(self) -> dict[tuple[str, str], str]:
        """(model, origin) -> the region serving it: the origin when it can host the model,
        else the nearest region (by RTT from the origin) that can."""
        rtt = {
            r.metadata.name: {lat.region: lat.rtt_ms for lat in r.spec.latencies}
            for r in self.snap.regions
        }
        out: dict[tuple[str, str], str] = {}
        for m in self.snap.models:
            model = m.metadata.name
            hosts = [r for r in self.regions if (model, r) in self.keys]
            for origin in self.regions:
                if (model, origin) in self.keys:
                    out[(model, origin)] = origin
                elif hosts:
                    out[(model, origin)] = min(
                        hosts, key=lambda h: (rtt.get(origin, {}).get(h, 1e9), h)
                    )
        return out

    def pool_lanes(self) -> dict[PoolKey, str]:
        if self.lane is None:
            return {}
        return {(k[1], k[2]): self.lane for k in self.keys.values()}

    def seen(self, obs: Observation, model: str, region: str) -> bool:
        """Demand of this lane in the last step that ``region`` serves (module doc)."""
        for fk, h in obs.history.items():
            if fk.model != model or not len(h.rates):
                continue
            if self.serving.get((model, fk.origin)) != region:
                continue
            kind = self.tier_kind.get(fk.tier)
            if self.lane == "deadline" and kind != "deadline":
                continue
            if self.lane == "interactive" and kind == "deadline":
                continue
            if h.rates.requests_per_s[-1] > 0:
                return True
        return False

    def desired(self, obs: Observation) -> dict[ReplicaKey, int]:
        out: dict[ReplicaKey, int] = {}
        for (model, region), key in self.keys.items():
            st = obs.replicas.get(key)
            cur = self.current.get(key, 0)
            want = cur
            if st is not None and st.ready > 0:
                u = st.busy + st.waiting / (st.ready * self.max_seqs[key])
                want = math.ceil(st.ready * u / self.target_util - 1e-9) + st.loading
                if st.waiting > 0 and st.loading == 0:
                    want = max(want, st.ready + 1)
            elif st is not None and st.waiting > 0:
                want = max(cur, 1)
            floor = 0
            if self.lane != "deadline":  # availability floors are for interactive serving
                floor = self.floor[key]
                if self.seen(obs, model, region):
                    floor = max(floor, 1)
            want = max(want, floor)
            if self.lane != "interactive":
                want += self.batch_extra(obs, model, region)
            hist = self.history.setdefault(key, deque())
            hist.append((obs.now, want))
            while hist and hist[0][0] < obs.now - self.stab:
                hist.popleft()
            if want < cur:
                want = min(cur, max(w for _, w in hist))
            out[key] = want
        self.current = out
        return out

    def batch_extra(self, obs: Observation, model: str, region: str) -> int:
        home = next(r for r in self.regions if (model, r) in self.keys)
        if region != home:
            return 0
        backlog = sum(v for (m, _), v in obs.backlog_tokens.items() if m == model)
        key = self.keys[(model, region)]
        if backlog <= 0 or self.rate[key] <= 0:
            return 0
        deadline = min((t.spec.deadline.completion_seconds for t in self.snap.tiers
                        if t.spec.deadline is not None), default=86400)
        return math.ceil(backlog / (self.rate[key] * deadline / 8))

    def decide(self, obs: Observation) -> FleetTarget:
        return FleetTarget(replicas=self.desired(obs), routes={}, pool_lanes=self.pool_lanes())
