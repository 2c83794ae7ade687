"""The twin's autoscaling policies, by name: llmfleet, the baselines (reactive, siloed,
SageServe, static peak) and the oracle."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from llmfleet.sim.policy import Policy
from llmfleet.sim.scenario import Scenario

if TYPE_CHECKING:
    from llmfleet.sim.workload import AnyWorkload

PolicyFactory = Callable[[Scenario, "AnyWorkload"], Policy]
"""factory(scenario, workload): the workload is for the oracle only (the true future);
every other policy must ignore it and read only its Observations."""


def policy_factories() -> dict[str, PolicyFactory]:
    """Policy name -> factory(scenario, workload). Order is the report's order."""
    from llmfleet.sim.policies.planner import Llmfleet, Oracle, SageServe
    from llmfleet.sim.policies.reactive import ReactiveThreshold
    from llmfleet.sim.policies.siloed import Siloed
    from llmfleet.sim.policies.static import StaticPeak

    return {
        "llmfleet": Llmfleet,
        "reactive": ReactiveThreshold,
        "siloed": Siloed,
        "sageserve": SageServe,
        "static-peak": StaticPeak,
        "oracle": Oracle,
    }
