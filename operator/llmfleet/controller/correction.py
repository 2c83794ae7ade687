"""The short-term correction between plans: a thin adapter around
:func:`llmfleet.cycle.correction.correct` (the same function the twin's llmfleet runs).

Every tick, each FleetPolicy in ``mode: apply`` with ``spec.correction.enabled`` and an
applied plan, that is not due for planning and whose last correction is
``spec.correction.intervalSeconds`` old, is corrected (:meth:`PlanningLoop._correct`):

    read    the fleet now (``kube.actuate.observe``: replicas asked and ready per (model,
            region, pool)), the gateway's demand of the last ``windowSeconds``
            (:meth:`DemandReader.read_recent`: the demand templates at that ``$window``) and
            vLLM's running and waiting requests per (model, serving region)
            (:meth:`DemandReader.read_replica_state`);
    decide  :func:`correct` against the last applied plan;
    act     when it adds replicas: actuate the plan with the correction's replicas and the
            nodes to pack them (:func:`corrected_spec`); an Event per addition, status
            ``correctedReplicas`` and ``lastCorrectionTime``, condition ``Corrected``.

Right after each new plan, the planning loop runs the same with ``after_plan`` (the demand
rule only) and actuates its result instead of the bare plan, so a new plan keeps what the
last window's demand still needs. A read that fails is ``Corrected=False``
(``CorrectionReadFailed``) and changes nothing: the correction only ever adds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from llmfleet.api.plan import FleetPlanSpec
from llmfleet.api.policy import FleetPolicy
from llmfleet.api.references import FleetSnapshot
from llmfleet.cycle.correction import (
    Correction,
    CorrectionFleet,
    CorrectionInputs,
    RecentDemand,
    cell_loads,
    correct,
    corrected_spec,
    plan_replicas,
    plan_routes,
)
from llmfleet.cycle.ports import DemandSourceError
from llmfleet.kube.actuate import Observation
from llmfleet.kube.prometheus import DemandReader


@dataclass(frozen=True)
class CorrectionRun:
    """One correction's outcome: what to actuate (None: nothing changes), the decision, or
    why it could not decide."""

    spec: FleetPlanSpec | None = None
    correction: Correction | None = None
    failure: str | None = None
    above_plan: int = 0
    """Replicas the fleet runs above the plan once this is applied."""


def correction_inputs(
    policy: FleetPolicy,
    snapshot: FleetSnapshot,
    plan: FleetPlanSpec,
    observed: Observation,
    recent: RecentDemand,
    running: Mapping[tuple[str, str], float],
    waiting: Mapping[tuple[str, str], float],
    *,
    after_plan: bool,
) -> CorrectionInputs:
    """What :func:`correct` reads, from what the controller observed (module doc)."""
    fleet = CorrectionFleet.of(snapshot)
    planned = plan_replicas(plan)
    return CorrectionInputs(
        settings=policy.spec.correction,
        fleet=fleet,
        plan=planned,
        routes=plan_routes(plan),
        wanted=planned if after_plan else dict(observed.replicas),
        cells=cell_loads(fleet, observed.ready_replicas, observed.replicas, running, waiting),
        recent=recent,
        after_plan=after_plan,
    )


def run_correction(
    policy: FleetPolicy,
    snapshot: FleetSnapshot,
    plan: FleetPlanSpec,
    observed: Observation,
    reader: DemandReader,
    now: float,
    *,
    after_plan: bool = False,
) -> CorrectionRun:
    """Read, decide, and the spec to actuate when the correction adds replicas."""
    settings = policy.spec.correction
    queries = policy.spec.prometheus.queries
    try:
        recent = reader.read_recent(queries, end=now, window_seconds=settings.window_seconds)
        states = () if after_plan else reader.read_replica_state(queries, end=now)
    except DemandSourceError as err:
        return CorrectionRun(failure=f"reading the last {settings.window_seconds}s: {err}")
    running = {(s.model, s.region): s.running for s in states if math.isfinite(s.running)}
    waiting = {(s.model, s.region): s.waiting for s in states if math.isfinite(s.waiting)}
    inputs = correction_inputs(policy, snapshot, plan, observed, recent, running, waiting,
                               after_plan=after_plan)
    decided = correct(inputs)
    above = decided.above(inputs.plan)
    if not decided.changed:
        return CorrectionRun(correction=decided, above_plan=above)
    max_nodes = {(r.name, p.name): p.max_nodes for r in snapshot.regions for p in r.spec.pools}
    return CorrectionRun(
        spec=corrected_spec(plan, decided, inputs.fleet, max_nodes),
        correction=decided,
        above_plan=above,
    )
