"""The planner in the loop: llmfleet, the oracle, and SageServe as published.

``llmfleet`` (:class:`Llmfleet`) runs the controller's own planning cycle
(:func:`llmfleet.cycle.run_cycle`) every FleetPolicy interval, with the twin's observed
history as the demand source (:class:`ObservedDemand`) where the controller has Prometheus:
the same known-flow filter, quota fallback, floors, tenant limits and warm start, and the
FleetPlanSpec it returns is what the twin executes (replicas per (model, region, pool) and
the routing weights per (model, tier, origin)); the tenants' limits of the plan are enforced
at the twin's ingress (:mod:`llmfleet.sim.gateway`), from the usage the twin saw per tenant.
Between plans the controller's short-term correction
(:func:`llmfleet.cycle.correction.correct`, the same code the controller runs every
``spec.correction.intervalSeconds``) adds replicas on top of the plan, never fewer than it,
from what the twin shows as the controller's Prometheus would: the last minute's demand per
flow (:attr:`~llmfleet.sim.policy.Observation.recent`, the gateway's ``rate(...[1m])``) and
each (model, region)'s running and waiting requests (vLLM's gauges); right after each plan
it keeps what the last minute's demand still needs.

``oracle`` is the same cycle with the true future as its forecaster (:class:`TrueFuture`:
point = the realised mean of each coming step, upper = its busiest 5 minutes), without the
correction: the best a planner with perfect forecasts
does, and the yardstick for how much forecast error costs.

``sageserve`` follows SageServe (arXiv 2502.14617) as published: every hour an ARIMA
forecast of each flow, the instance-delta ILP over (model, region, VM type) for the max of
the coming window (:func:`llmfleet.plan.sageserve.solve_sageserve`), requests served in
their origin region, plus its reactive rules every minute (on-demand VMs only, as published): one more instance of a (model,
region) whose mean memory (sequence-slot) utilisation is above 0.5, one fewer below 0.25.
Like every policy of the twin it keeps each model's ``minReplicasPerRegion`` (an availability
floor the published ILP does not have).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from llmfleet.api.plan import FleetPlanSpec
from llmfleet.api.policy import FleetPolicy
from llmfleet.api.references import FleetSnapshot
from llmfleet.cycle import (
    CycleInputs,
    CyclePorts,
    CycleResult,
    DemandRead,
    policy_snapshot,
    run_cycle,
)
from llmfleet.cycle.correction import (
    Correction,
    CorrectionFleet,
    CorrectionInputs,
    cell_loads,
    correct,
)
from llmfleet.cycle.ports import Forecaster, forecast_histories
from llmfleet.fairness.limits import Usage
from llmfleet.forecast.forecaster import forecast_all
from llmfleet.forecast.types import DemandForecast, DemandHistory, DemandRates, FlowKey
from llmfleet.plan.instance import (
    CurrentState,
    InstanceError,
    PlanningInstance,
    from_snapshot,
)
from llmfleet.plan.sageserve import solve_sageserve
from llmfleet.plan.types import Plan
from llmfleet.sim.policies.sizing import best_pool
from llmfleet.sim.policy import FleetTarget, Observation, ReplicaKey, RouteKey
from llmfleet.sim.scenario import Scenario
from llmfleet.sim.workload import AnyWorkload


def current_state(obs: Observation) -> CurrentState:
    """The fleet as the planner's step 0 starts from: replicas ready or on their way."""
    return CurrentState(
        nodes=dict(obs.nodes),
        replicas={k: s.ready + s.loading for k, s in obs.replicas.items() if s.ready + s.loading},
        backlog_tokens=dict(obs.backlog_tokens),
    )


def slot_counts(snap: FleetSnapshot) -> dict[ReplicaKey, int]:
    """Max concurrent sequences of one replica per (model, region, pool) it can run on."""
    out: dict[ReplicaKey, int] = {}
    for r in snap.regions:
        for p in r.spec.pools:
            for m in snap.models:
                for prof in m.spec.profiles:
                    if prof.gpu_type == p.gpu_type:
                        out[(m.metadata.name, r.metadata.name, p.name)] = (
                            prof.max_concurrent_sequences
                        )
    return out


def realised_rates(
    wl: AnyWorkload, step: int, peak_window: int = 300
) -> dict[FlowKey, tuple[np.ndarray, np.ndarray]]:
    """Per flow, the rates the workload really sends in each planning step: (mean, peak),
    each an array (steps, 3) of requests, prompt and output tokens per second; the peak is
    the busiest ``peak_window`` inside the step (what the oracle provisions interactive
    tiers for, as the live planner does with its upper quantile). One pass over the stream."""
    n = max(math.ceil(wl.duration / step), 1)
    per = max(step // peak_window, 1)
    sums: dict[tuple[int, int, int], np.ndarray] = {}
    for c in wl.chunks():
        fine = np.minimum((c.arrival // (step / per)).astype(np.int64), n * per - 1)
        flows = np.stack([c.model, c.origin, c.tier], axis=1)
        if flows.shape[0] == 0:
            continue
        keys, inverse = np.unique(flows, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        for f, key in enumerate(keys):
            sel = inverse == f
            arr = sums.setdefault((int(key[0]), int(key[1]), int(key[2])), np.zeros((n * per, 3)))
            np.add.at(arr[:, 0], fine[sel], 1.0)
            np.add.at(arr[:, 1], fine[sel], c.prompt[sel].astype(float))
            np.add.at(arr[:, 2], fine[sel], c.output[sel].astype(float))
    out: dict[FlowKey, tuple[np.ndarray, np.ndarray]] = {}
    for (m, o, t), arr in sums.items():
        rates = arr.reshape(n, per, 3) / (step / per)
        busiest = rates[np.arange(n), rates[:, :, 1:].sum(axis=2).argmax(axis=1)]
        fk = FlowKey(model=wl.models[m], origin=wl.regions[o], tier=wl.tiers[t])
        out[fk] = (rates.mean(axis=1), busiest)
    return out


class ObservedDemand:
    """The twin's demand source (a :class:`~llmfleet.cycle.ports.DemandSource`): the history
    the engine has observed, cut to the policy's ``historySeconds`` like a Prometheus range
    query, and as fresh as the engine's clock (the twin's metrics are live)."""

    where = "the twin's observed demand"

    def __init__(self, obs: Observation) -> None:
        self.obs = obs

    def read(
        self, queries: object, *, end: float, history_seconds: int, step_seconds: int,
        peak_seconds: int = 0,
    ) -> DemandRead:
        del queries  # the twin knows its flows; there is nothing to query
        keep = max(1, history_seconds // step_seconds)
        out = []
        for seen in self.obs.history.values():
            if seen.step_seconds != step_seconds:
                raise ValueError(
                    f"observed history steps {seen.step_seconds}s, the policy plans in "
                    f"{step_seconds}s"
                )
            h = seen if peak_seconds else seen.model_copy(update={"peaks": None})
            cut = max(0, len(h.rates) - keep)
            out.append(h if cut == 0 else _tail(h, cut))
        start = min((h.start for h in out), default=end)
        return DemandRead(tuple(out), start, step_seconds, newest_sample=end, age_seconds=0.0)

    def read_usage(self, queries: object, *, end: float, step_seconds: int) -> tuple[Usage, ...]:
        """Each tenant's tokens/s per (model, origin) over the last step, as the engine saw
        them arrive (what the controller's ``tenantUsage`` query reads at the gateway)."""
        del queries, end, step_seconds
        return tuple(
            Usage(tenant, model, origin, tps)
            for (tenant, model, origin), tps in sorted(self.obs.tenant_usage.items())
        )


class CachedForecaster:
    """:func:`~llmfleet.cycle.ports.forecast_histories`, recomputed only when the history
    grew (it grows by whole steps; the cycle runs every interval, several per step)."""

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self._out: Mapping[FlowKey, DemandForecast] = {}

    def __call__(
        self, histories: tuple[DemandHistory, ...], policy: FleetPolicy, now: float
    ) -> Mapping[FlowKey, DemandForecast]:
        key = (max((len(h.rates) for h in histories), default=0), len(histories))
        if key != self._key:
            self._out = forecast_histories(histories, policy, now)
            self._key = key
        return self._out


class TrueFuture:
    """The oracle's forecaster: the realised rates of the coming steps (point = mean,
    upper = the busiest 5 minutes of each step), whatever the history says."""

    def __init__(self, truth: Mapping[FlowKey, tuple[np.ndarray, np.ndarray]], start_unix: float):
        self.truth = truth
        self.start_unix = start_unix

    def __call__(
        self, histories: tuple[DemandHistory, ...], policy: FleetPolicy, now: float
    ) -> Mapping[FlowKey, DemandForecast]:
        del histories
        step, steps = policy.spec.horizon.step_seconds, policy.spec.horizon.steps
        first = int((now - self.start_unix) // step)
        start = self.start_unix + first * step
        return {
            fk: DemandForecast(
                key=fk,
                start=start,
                step_seconds=step,
                point=_window(mean, first, steps),
                upper=_window(peak, first, steps),
                quantile=0.99,
                method="naive",
            )
            for fk, (mean, peak) in self.truth.items()
        }


def spec_target(spec: FleetPlanSpec, note: str, *, spill: bool = False) -> FleetTarget:
    """A FleetPlan's executed step as the twin's target: what the controller actuates
    (replicas per (model, region, pool) and the routing weights); ``spill``: the ingress
    spills bursts (:attr:`FleetTarget.spill`)."""
    replicas = {(r.model, r.region, r.pool): r.replicas for r in spec.replicas if r.replicas > 0}
    routes: dict[RouteKey, dict[str, float]] = {}
    for rule in spec.routing:
        for w in rule.weights:
            if w.fraction > 0:
                routes.setdefault((rule.model, rule.tier, rule.origin), {})[w.region] = w.fraction
    return FleetTarget(replicas=replicas, routes=routes, note=note,
                       throttles=list(spec.throttles), spill=spill)


class Llmfleet:
    """The controller's planning cycle (:func:`llmfleet.cycle.run_cycle`) every interval, and
    the twin's reactive correction in between (module doc)."""

    name = "llmfleet"
    spill = True
    """Between plans the ingress spills a burst to a region that meets the tier's TTFT
    (:attr:`~llmfleet.sim.policy.FleetTarget.spill`)."""

    def __init__(
        self,
        scenario: Scenario,
        workload: AnyWorkload | None = None,
        *,
        oracle: bool = False,
        interval_seconds: float | None = None,
    ) -> None:
        self.fleet_policy = scenario.snapshot().policies[0]
        self.router_shares = scenario.router_shares()  # the twin's router (scenario routing)
        # the fleet as the controller's index gives it to the cycle (same order, same filter)
        self.snap = policy_snapshot(scenario.objects(), self.fleet_policy.namespace)
        spec = self.fleet_policy.spec
        self.step = int(spec.horizon.step_seconds)
        self.interval_seconds = float(interval_seconds or spec.interval_seconds)
        self.react_seconds = float(spec.correction.interval_seconds)
        """How often the short-term correction runs (``spec.correction.intervalSeconds``)."""
        self.oracle = oracle and workload is not None
        self.truth = realised_rates(workload, self.step) if self.oracle and workload else None
        if oracle:
            self.name = "oracle"
        self.forecaster: Forecaster = CachedForecaster()
        self.previous: Plan | None = None
        self.last_spec: FleetPlanSpec | None = None
        self.last_name: str | None = None
        self.planned: dict[ReplicaKey, int] = {}
        self.target = FleetTarget(replicas={}, routes={})
        self.max_seqs = slot_counts(self.snap)
        self.failures = 0
        self.last_result: CycleResult | None = None
        self.fleet = CorrectionFleet.of(self.snap)
        """The fleet as the short-term correction sees it (:mod:`llmfleet.cycle.correction`)."""
        self.last_correction: Correction | None = None
        self.plans = 0
        self.routed: dict[str, list[float]] = {}
        """Per model, summed over the plans: [replicas routing put there, replicas the load
        routing took away would need] (:attr:`CycleResult.routing`)."""

    def report(self) -> dict[str, Any]:
        """What the run's summary carries of this policy: the plans made and, per model, the
        mean over them of the replicas that exist because of routing (and are spared by
        it), summed over regions at each plan's step 0."""
        n = max(self.plans, 1)
        return {"plans": self.plans, "routing": {
            m: {"routed_replicas": r / n, "saved_replicas": sv / n}
            for m, (r, sv) in sorted(self.routed.items())}}

    def cycle_inputs(self, obs: Observation) -> CycleInputs:
        """What the controller's cycle would be given at ``obs.now``."""
        return CycleInputs(
            policy=self.fleet_policy,
            snapshot=self.snap,
            current=current_state(obs),
            now=datetime.fromtimestamp(obs.start_unix + obs.now, UTC),
            last_plan=self.last_spec,
            last_plan_name=self.last_name,
            previous=self.previous,
            router_shares=self.router_shares,
        )

    def cycle_ports(self, obs: Observation) -> CyclePorts:
        forecaster = (
            TrueFuture(self.truth, obs.start_unix) if self.truth is not None else self.forecaster
        )
        source = ObservedDemand(obs)
        return CyclePorts(demand=source, usage=source, forecaster=forecaster)

    # ------------------------------------------------------------------ decide
    def decide(self, obs: Observation) -> FleetTarget:
        result = run_cycle(self.cycle_inputs(obs), self.cycle_ports(obs))
        self.last_result = result
        if result.spec is None or result.plan is None:
            self.failures += 1
            why = result.failure.message if result.failure else "no plan"
            return self._keep(why)
        self.previous, self.last_spec, self.last_name = result.plan, result.spec, result.name
        self.plans += 1
        for cell in result.routing:
            acc = self.routed.setdefault(cell.model, [0.0, 0.0])
            acc[0] += cell.routed_replicas
            acc[1] += cell.saved_replicas
        gap = result.spec.solver.gap
        self.target = spec_target(
            result.spec,
            f"{result.plan.solver.method}, gap {f'{gap:.2%}' if gap is not None else 'n/a'}",
            spill=self.spill,
        )
        self.planned = dict(self.target.replicas)
        if self.truth is None:  # a new plan keeps what the last window's demand still needs
            correction = correct(self.correction_inputs(obs, after_plan=True))
            self.last_correction = correction
            if correction.changed:
                self.target = dataclasses.replace(self.target, replicas=dict(correction.replicas))
        return self.target

    def _keep(self, why: str) -> FleetTarget:
        """A failed solve keeps the last good plan."""
        t = self.target
        return FleetTarget(replicas=t.replicas, routes=t.routes, note=f"kept last plan: {why}",
                           spill=t.spill)

    def react(self, obs: Observation) -> FleetTarget | None:
        """The controller's short-term correction (:func:`llmfleet.cycle.correction.correct`)
        on the twin's observation; None when nothing changes."""
        if self.truth is not None:
            return None
        correction = correct(self.correction_inputs(obs))
        self.last_correction = correction
        if not correction.changed:
            return None
        self.target = dataclasses.replace(self.target, replicas=dict(correction.replicas),
                                          throttles=None)
        return self.target

    def correction_inputs(self, obs: Observation, *, after_plan: bool = False) -> CorrectionInputs:
        """What the controller's correction would read at ``obs.now``: the plan in force,
        the replicas wanted now, vLLM's load per (model, serving region) and the gateway's
        demand over the last window."""
        ready = {k: st.ready for k, st in obs.replicas.items()}
        started = {k: st.ready + st.loading for k, st in obs.replicas.items()}
        running: dict[tuple[str, str], float] = {}
        waiting: dict[tuple[str, str], float] = {}
        for k, st in obs.replicas.items():
            running[k[:2]] = running.get(k[:2], 0.0) + st.busy * st.ready * self.fleet.slots(k)
            waiting[k[:2]] = waiting.get(k[:2], 0.0) + st.waiting
        return CorrectionInputs(
            settings=self.fleet_policy.spec.correction,
            fleet=self.fleet,
            plan=self.planned,
            routes=self.target.routes,
            wanted=self.target.replicas,
            cells=cell_loads(self.fleet, ready, started, running, waiting),
            recent=obs.recent,
            after_plan=after_plan,
        )


class Oracle(Llmfleet):
    """The planner fed the true future demand."""

    def __init__(self, scenario: Scenario, workload: AnyWorkload | None = None) -> None:
        super().__init__(scenario, workload, oracle=True)


class SageServe:
    """SageServe as published: hourly ARIMA + instance-delta ILP, reactive 0.5/0.25 rules."""

    name = "sageserve"
    interval_seconds = 3600.0
    react_seconds = 60.0
    scale_out_above = 0.5
    scale_in_below = 0.25

    def __init__(
        self, scenario: Scenario, workload: AnyWorkload | None = None, time_limit: float = 10.0,
        scale_out_above: float | None = None,
    ) -> None:
        """``scale_out_above``: the reactive rule's threshold (0.5 as published; the
        scale-in threshold follows at half of it, 0.25 as published)."""
        del workload  # a live policy never sees the future
        if scale_out_above is not None:
            if not 0 < scale_out_above <= 1:
                raise ValueError(f"sageserve scale_out_above must be in (0, 1], got "
                                 f"{scale_out_above}")
            self.scale_out_above, self.scale_in_below = scale_out_above, scale_out_above / 2
        self.snap = scenario.snapshot()
        self.fleet_policy = self.snap.policies[0]
        spec = self.fleet_policy.spec
        self.step = int(spec.horizon.step_seconds)
        self.steps = int(spec.horizon.steps)
        self.window = range(max(1, round(self.interval_seconds / self.step)))
        self.time_limit = time_limit
        self.replicas: dict[ReplicaKey, int] = {}
        self.floor: dict[tuple[str, str], int] = {}
        self.pool_of: dict[tuple[str, str], str] = {}
        self.max_seqs = slot_counts(self.snap)
        for m in self.snap.models:
            for reg in self.snap.regions:
                found = best_pool(self.snap, m, reg.metadata.name, spot=False)
                if found is None:
                    continue
                cell = (m.metadata.name, reg.metadata.name)
                self.pool_of[cell] = found[0]
                self.floor[cell] = m.spec.min_replicas_per_region
        self.failures = 0
        self.note = ""

    def decide(self, obs: Observation) -> FleetTarget:
        got = forecast_all(
            obs.history.values(),
            horizon_steps=max(len(self.window), 1),
            step_seconds=self.step,
            method="arima",
            quantile=self.fleet_policy.spec.forecast.upper_quantile,
        )
        forecasts = list(got.values())
        try:
            inst = from_snapshot(
                self.snap, self._padded(forecasts), current_state(obs), self.fleet_policy
            )
        except InstanceError as err:
            self.failures += 1
            self.note = f"cannot plan: {err}"
            return self._target()
        plan = solve_sageserve(on_demand_only(inst), window=self.window, time_limit=self.time_limit)
        if plan.status not in ("optimal", "feasible"):
            self.failures += 1
            self.note = f"kept last plan: ILP {plan.status}"
            return self._target()
        self.replicas = {k: v for k, v in plan.replicas.items() if v > 0}
        for (model, region), n in self.floor.items():
            key = (model, region, self.pool_of[(model, region)])
            have = sum(v for k, v in self.replicas.items() if k[:2] == (model, region))
            if have < n:
                self.replicas[key] = self.replicas.get(key, 0) + n - have
        self.note = f"ILP {plan.status} in {plan.seconds:.1f}s"
        return self._target()

    def _padded(self, forecasts: list[DemandForecast]) -> list[DemandForecast]:
        """The instance wants the whole horizon; SageServe looks at its window only, so the
        window's forecast is held for the remaining steps."""
        out = []
        for f in forecasts:
            if f.steps >= self.steps:
                out.append(f)
                continue
            out.append(
                f.model_copy(
                    update={
                        "point": _hold(f.point, self.steps),
                        "upper": _hold(f.upper, self.steps),
                    }
                )
            )
        return out

    def _target(self) -> FleetTarget:
        return FleetTarget(replicas=dict(self.replicas), routes={}, note=self.note)

    def react(self, obs: Observation) -> FleetTarget | None:
        by_cell: dict[tuple[str, str], list[tuple[ReplicaKey, float, int]]] = {}
        for key, st in obs.replicas.items():
            if st.ready:
                seqs = self.max_seqs.get(key) or 1
                use = st.busy + st.waiting / (st.ready * seqs)  # queued work is memory too
                by_cell.setdefault(key[:2], []).append((key, use, st.ready))
        changed = False
        for cell in self._starved(obs):  # demand but no instance: the rules need one to read
            self.replicas[(*cell, self.pool_of[cell])] = 1
            changed = True
        for cell, rows in by_cell.items():
            ready = sum(r for _, _, r in rows)
            busy = sum(b * r for _, b, r in rows) / ready
            have = sum(v for k, v in self.replicas.items() if k[:2] == cell)
            if busy > self.scale_out_above and have <= ready:
                key = (*cell, self.pool_of.get(cell, rows[0][0][2]))
                self.replicas[key] = self.replicas.get(key, 0) + 1
                changed = True
            elif busy < self.scale_in_below and have > max(self.floor.get(cell, 0), 1):
                key = max(
                    (k for k in self.replicas if k[:2] == cell), key=lambda k: self.replicas[k]
                )
                self.replicas[key] -= 1
                changed = True
        return self._target() if changed else None

    def _starved(self, obs: Observation) -> list[tuple[str, str]]:
        """(model, origin) cells with demand in the last step and no instance asked for."""
        out = []
        for fk, h in obs.history.items():
            cell = (fk.model, fk.origin)
            if (
                cell in self.pool_of
                and len(h.rates)
                and h.rates.requests_per_s[-1] > 0
                and not any(k[:2] == cell and v > 0 for k, v in self.replicas.items())
            ):
                out.append(cell)
        return sorted(set(out))


def on_demand_only(inst: PlanningInstance) -> PlanningInstance:
    """The instance without spot pools: SageServe provisions on-demand VMs only."""
    regions = tuple(
        dataclasses.replace(r, pools=tuple(p for p in r.pools if not p.spot)) for r in inst.regions
    )
    keep = {(r.name, p.name) for r in regions for p in r.pools}
    current = dataclasses.replace(
        inst.current,
        nodes={k: v for k, v in inst.current.nodes.items() if k in keep},
        replicas={k: v for k, v in inst.current.replicas.items() if k[1:] in keep},
    )
    return dataclasses.replace(inst, regions=regions, current=current)


def _window(arr: np.ndarray, first: int, steps: int) -> DemandRates:
    """``steps`` rows of ``arr`` from ``first``; past the end of the trace the last row is
    held."""
    rows = arr[first : first + steps]
    if rows.shape[0] == 0:
        rows = arr[-1:]
    if rows.shape[0] < steps:
        rows = np.concatenate([rows, np.repeat(rows[-1:], steps - rows.shape[0], axis=0)])
    return DemandRates(
        requests_per_s=tuple(rows[:, 0].tolist()),
        prompt_tokens_per_s=tuple(rows[:, 1].tolist()),
        output_tokens_per_s=tuple(rows[:, 2].tolist()),
    )


def _tail(h: DemandHistory, cut: int) -> DemandHistory:
    """``h`` without its first ``cut`` steps."""

    def cut_of(r: DemandRates) -> DemandRates:
        return DemandRates(
            requests_per_s=r.requests_per_s[cut:],
            prompt_tokens_per_s=r.prompt_tokens_per_s[cut:],
            output_tokens_per_s=r.output_tokens_per_s[cut:],
        )

    return h.model_copy(
        update={
            "start": h.start + cut * h.step_seconds,
            "rates": cut_of(h.rates),
            "peaks": None if h.peaks is None else cut_of(h.peaks),
        }
    )


def _hold(r: DemandRates, n: int) -> DemandRates:
    def pad(xs: tuple[float, ...]) -> tuple[float, ...]:
        return xs + (xs[-1],) * (n - len(xs)) if xs else (0.0,) * n

    return DemandRates(
        requests_per_s=pad(r.requests_per_s),
        prompt_tokens_per_s=pad(r.prompt_tokens_per_s),
        output_tokens_per_s=pad(r.output_tokens_per_s),
    )
