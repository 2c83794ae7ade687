"""Siloed baseline: separate interactive (on-demand pools) and batch (spot pools) fleets,
each scaled by its own reactive threshold autoscaler (:mod:`.reactive`); the batch lane has
no availability floor and a 30-minute scale-in stabilisation (it is sized by its backlog)."""

from __future__ import annotations

from llmfleet.sim.policies.reactive import ReactiveThreshold
from llmfleet.sim.policy import FleetTarget, Observation
from llmfleet.sim.scenario import Scenario


class Siloed:
    name = "siloed"
    interval_seconds = 60.0

    def __init__(self, scenario: Scenario, workload: object = None) -> None:
        del workload  # a live policy never sees the future
        self.interactive = ReactiveThreshold(scenario, spot=False, lane="interactive")
        self.batch = ReactiveThreshold(scenario, spot=True, lane="deadline",
                                       stabilization_seconds=1800.0)

    def decide(self, obs: Observation) -> FleetTarget:
        a = self.interactive.desired(obs)
        b = self.batch.desired(obs)
        reps = dict(a)
        for k, v in b.items():
            reps[k] = reps.get(k, 0) + v
        lanes = {**self.interactive.pool_lanes(), **self.batch.pool_lanes()}
        return FleetTarget(replicas=reps, routes={}, pool_lanes=lanes)
