"""The planning cycle: pure, between the core (forecast, plan, fairness) and the I/O shell.

The controller's kopf timer and the digital twin's llmfleet policy both call
:func:`run_cycle`; only the ports differ (Prometheus or the twin's observed history).
"""

from llmfleet.cycle.demand import Demand, DemandFailure
from llmfleet.cycle.floors import Floors
from llmfleet.cycle.ports import (
    BadQuery,
    DemandRead,
    DemandSource,
    DemandSourceError,
    SourceUnreachable,
    UsageSource,
)
from llmfleet.cycle.run import (
    ConditionUpdate,
    CycleInputs,
    CyclePorts,
    CycleResult,
    Failure,
    reachability,
    run_cycle,
)
from llmfleet.cycle.snapshot import policy_snapshot

__all__ = [
    "BadQuery",
    "ConditionUpdate",
    "CycleInputs",
    "CyclePorts",
    "CycleResult",
    "Demand",
    "DemandFailure",
    "DemandRead",
    "DemandSource",
    "DemandSourceError",
    "Failure",
    "Floors",
    "SourceUnreachable",
    "UsageSource",
    "policy_snapshot",
    "reachability",
    "run_cycle",
]
