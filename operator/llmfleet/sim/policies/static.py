"""Static peak provisioning: per (model, region), enough replicas for the peak token rate
seen in the history so far (the pre-start history a live operator would size from), by
the planner's capacity model at the strictest tier of that flow, times ``headroom`` (the
knob the equal-SLO sweep turns; 1 by default); never scales in (it ratchets up if a higher
peak is observed)."""

from __future__ import annotations

import math

from llmfleet.sim.policies.sizing import best_pool, throughput
from llmfleet.sim.policy import FleetTarget, Observation, ReplicaKey
from llmfleet.sim.scenario import Scenario


class StaticPeak:
    name = "static-peak"
    interval_seconds = 3600.0

    def __init__(self, scenario: Scenario, workload: object = None,
                 headroom: float = 1.0) -> None:
        del workload  # a live policy never sees the future
        if headroom <= 0:
            raise ValueError(f"static-peak headroom must be > 0, got {headroom}")
        self.headroom = headroom
        self.snap = scenario.snapshot()
        self.replicas: dict[ReplicaKey, int] = {}

    def decide(self, obs: Observation) -> FleetTarget:
        tiers = {t.metadata.name: t for t in self.snap.tiers}
        models = {m.metadata.name: m for m in self.snap.models}
        need: dict[ReplicaKey, float] = {}
        for fk, h in obs.history.items():
            r = h.rates
            if not len(r):
                continue
            tok = [a + b for a, b in zip(r.prompt_tokens_per_s, r.output_tokens_per_s,
                                         strict=True)]
            i = max(range(len(tok)), key=tok.__getitem__)
            if tok[i] <= 0:
                continue
            share = r.prompt_tokens_per_s[i] / tok[i]
            per_req = tok[i] / max(r.requests_per_s[i], 1e-9)
            found = best_pool(self.snap, models[fk.model], fk.origin, spot=False)
            if found is None:
                continue
            cap = throughput(found[1], tiers[fk.tier], share, per_req)
            if cap <= 0:
                continue
            key = (fk.model, fk.origin, found[0])
            need[key] = need.get(key, 0.0) + self.headroom * tok[i] / cap
        for m in self.snap.models:
            for reg in self.snap.regions:
                found = best_pool(self.snap, m, reg.metadata.name, spot=False)
                if found and m.spec.min_replicas_per_region:
                    key = (m.metadata.name, reg.metadata.name, found[0])
                    need[key] = max(need.get(key, 0.0), m.spec.min_replicas_per_region)
        for k, v in need.items():
            self.replicas[k] = max(self.replicas.get(k, 0), math.ceil(v - 1e-9))
        return FleetTarget(replicas=dict(self.replicas), routes={})
