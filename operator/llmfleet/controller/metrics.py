"""The controller's Prometheus metrics: one registry per operator, served on its own port.

Names and labels are those of :data:`llmfleet.observe.metrics.LLMFLEET` (the contract with
the chart's dashboards and alert rules). Gauges describing a plan are replaced as a whole
when a policy plans again, so a pool that left the plan stops being exported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from llmfleet.api.plan import FleetPlanSpec
from llmfleet.fairness.limits import LIMIT_METRIC, USAGE_METRIC, LimitTable, metric_samples
from llmfleet.observe.metrics import LLMFLEET, SOLVER_STATUSES

SOLVER_STATUS_OF = {
    "Optimal": "optimal",
    "Feasible": "feasible",
    "Infeasible": "infeasible",
    "Timeout": "timeout_no_solution",
    "Error": "error",
}


def _labels(name: str) -> tuple[str, ...]:
    return LLMFLEET[name]


@dataclass
class FleetMetrics:
    """Every ``llmfleet_*`` series the planning loop exports."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        r = self.registry

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, _labels(name), registry=r)

        self.desired_replicas = gauge(
            "llmfleet_desired_replicas", "Replicas the newest plan wants per (model, region, pool)."
        )
        self.current_replicas = gauge(
            "llmfleet_current_replicas", "Replicas observed when the newest plan was made."
        )
        self.desired_nodes = gauge(
            "llmfleet_desired_nodes", "Nodes the newest plan wants per pool."
        )
        self.plan_cost = gauge(
            "llmfleet_plan_cost_dollars_per_hour", "USD per hour of the newest plan's first step."
        )
        self.plan_timestamp = gauge(
            "llmfleet_plan_timestamp_seconds", "Unix time the newest plan was made."
        )
        self.solver_duration = gauge(
            "llmfleet_solver_duration_seconds", "Wall-clock seconds of the last solve."
        )
        self.solver_gap = gauge(
            "llmfleet_solver_gap_ratio", "Relative gap of the newest plan to the solver's bound."
        )
        self.solver_status = gauge(
            "llmfleet_solver_status", "1 for the last solve's outcome, 0 for the others."
        )
        self.unmet = gauge(
            "llmfleet_unmet_demand_tokens_per_second",
            "Demand the newest plan cannot serve, tokens/s per (model, origin region).",
        )
        self.actuation_errors = Counter(
            "llmfleet_actuation_errors_total",
            "Failed writes while actuating plans.",
            _labels("llmfleet_actuation_errors_total"),
            registry=r,
        )
        self.region_reachable = gauge(
            "llmfleet_region_reachable",
            "1 when the controller reached the region's cluster in its last cycle, else 0.",
        )
        self.tenant_limit = gauge(
            LIMIT_METRIC,
            "Token rate limit of each tenant per model in the newest plan (sum over regions).",
        )
        self.tenant_usage = gauge(
            USAGE_METRIC,
            "Token rate each tenant used per model when the newest plan was made.",
        )
        self.corrected_replicas = gauge(
            "llmfleet_corrected_replicas",
            "Replicas the short-term correction runs above the last applied plan now.",
        )
        self.corrections = Counter(
            "llmfleet_correction_replicas_added_total",
            "Replicas the short-term correction added, per (model, region, pool) and rule "
            "(demand: the last window's demand; load: slots plus queue).",
            _labels("llmfleet_correction_replicas_added_total"),
            registry=r,
        )
        self.cycle_crashes = Counter(
            "llmfleet_planning_cycle_crashes_total",
            "Planning cycles that ended in an unforeseen exception (each is a Planned=False "
            "CycleCrashed condition and a Warning Event; the loop goes on).",
            registry=r,
        )
        self.data_age = Gauge(
            "llmfleet_demand_data_age_seconds",
            "Age of the newest demand sample read from Prometheus, seconds.",
            registry=r,
        )

    def record_plan(self, spec: FleetPlanSpec, made_at: float) -> None:
        """Replace the plan gauges with ``spec``'s figures."""
        policy = spec.policy
        self.plan_cost.labels(policy).set(spec.cost_per_hour)
        self.plan_timestamp.labels(policy).set(made_at)
        if spec.solver.gap is not None:
            self.solver_gap.labels(policy).set(spec.solver.gap)
        for g in (self.desired_replicas, self.current_replicas, self.desired_nodes, self.unmet):
            g.clear()
        for r in spec.replicas:
            self.desired_replicas.labels(r.model, r.region, r.pool).set(r.replicas)
            self.current_replicas.labels(r.model, r.region, r.pool).set(r.current_replicas or 0)
        for n in spec.nodes:
            self.desired_nodes.labels(n.region, n.pool, n.capacity_type).set(n.nodes)
        unmet: dict[tuple[str, str], float] = {}
        for u in spec.unmet:
            unmet[(u.model, u.origin)] = unmet.get((u.model, u.origin), 0.0) + u.tokens_per_second
        for (model, origin), v in unmet.items():
            self.unmet.labels(model, origin).set(v)

    def record_limits(self, table: LimitTable) -> None:
        """Replace the tenant limit and usage gauges with ``table``'s figures."""
        gauges = {LIMIT_METRIC: self.tenant_limit, USAGE_METRIC: self.tenant_usage}
        for g in gauges.values():
            g.clear()
        for sample in metric_samples(table):
            gauges[sample.name].labels(**dict(sample.labels)).set(sample.value)

    def record_solve(self, policy: str, status: str, seconds: float) -> None:
        """One solve's outcome (``status`` as in :class:`~llmfleet.api.plan.SolverResult`)."""
        self.solver_duration.labels(policy).set(seconds)
        mine = SOLVER_STATUS_OF.get(status, "error")
        for s in SOLVER_STATUSES:
            self.solver_status.labels(policy, s).set(1.0 if s == mine else 0.0)

    def record_actuation_errors(self, errors: Iterable[tuple[str, str]]) -> None:
        """One increment per failed write, labelled (region, target)."""
        for region, target in errors:
            self.actuation_errors.labels(region, target).inc()

    def serve(self, port: int, addr: str = "0.0.0.0") -> WSGIServer:
        """Serve ``/metrics`` on ``port`` in a daemon thread; returns the server."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server
