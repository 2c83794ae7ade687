r"""Cost at equal SLO: each policy's main knob swept on the same arrivals, and the frontier.

A policy's cost means little beside another's unless both hold the same SLO: a reactive
autoscaler at a lower target utilisation buys more replicas and misses less. So each
policy runs at several values of the knob that trades cost for SLO (:data:`KNOBS`), every
run on the same arrivals with the same seed, and each run is a point

    (SLO level, USD, GPU-hours),   SLO level = min over interactive tiers of the share of
                                   hours in which the tier's p95 TTFT target held

(ties broken by the share of requests within target, the worst tier's). A policy's frontier
is its points that no other of its points beats on both cost and SLO. The headline ratio
against a baseline is taken **at equal SLO**: llmfleet's cost at its default knob over the
cheapest run of the baseline whose SLO level is at least llmfleet's (:func:`equal_slo`);
when no run of the baseline reaches it, the ratio is against the baseline's best run and
says so.

The knobs (the value each policy ships with is in the sweep):

* ``reactive`` — ``target``: the HPA target utilisation (default 0.6);
* ``static-peak`` — ``headroom``: multiplier on the peak it provisions for (default 1);
* ``sageserve`` — ``scale_out``: the reactive rule's scale-out threshold, scale-in at half
  (0.5 / 0.25 as published);
* ``llmfleet`` — ``utilisation``: each interactive tier's ``targetUtilization`` times this
  (default 1: the SLATiers as written).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmfleet.sim.scenario import Scenario

if TYPE_CHECKING:
    from llmfleet.sim.policies import PolicyFactory
    from llmfleet.sim.report import Comparison


@dataclass(frozen=True)
class Knob:
    """The knob of one policy that trades cost for SLO."""

    policy: str
    name: str
    values: tuple[float, ...]
    default: float
    make: Callable[[float], PolicyFactory]
    """value -> the policy's factory at that value."""

    def run_name(self, value: float) -> str:
        """The run's name in reports: the policy's own at the default value."""
        return self.policy if value == self.default else f"{self.policy}@{self.name}={value:g}"


def with_tier_utilisation(scenario: Scenario, factor: float) -> Scenario:
    """``scenario`` with every interactive SLATier's ``targetUtilization`` times ``factor``
    (capped at 1)."""
    if factor <= 0:
        raise ValueError(f"utilisation factor must be > 0, got {factor}")
    fleet = []
    for doc in scenario.fleet:
        spec = doc.get("spec") or {}
        if doc.get("kind") == "SLATier" and spec.get("type") == "interactive":
            util = float(spec.get("targetUtilization", 0.7))
            fleet.append({**doc, "spec": {**spec, "targetUtilization": min(1.0, util * factor)}})
        else:
            fleet.append(doc)
    return scenario.model_copy(update={"fleet": fleet})


def _llmfleet(value: float) -> PolicyFactory:
    from llmfleet.sim.policies.planner import Llmfleet

    return lambda sc, wl: Llmfleet(with_tier_utilisation(sc, value), wl)


def _reactive(value: float) -> PolicyFactory:
    from llmfleet.sim.policies.reactive import ReactiveThreshold

    return lambda sc, wl: ReactiveThreshold(sc, wl, target=value)


def _static(value: float) -> PolicyFactory:
    from llmfleet.sim.policies.static import StaticPeak

    return lambda sc, wl: StaticPeak(sc, wl, headroom=value)


def _sageserve(value: float) -> PolicyFactory:
    from llmfleet.sim.policies.planner import SageServe

    return lambda sc, wl: SageServe(sc, wl, scale_out_above=value)


KNOBS: Mapping[str, Knob] = {
    k.policy: k
    for k in (
        Knob("llmfleet", "utilisation", (0.8, 0.9, 1.0, 1.2), 1.0, _llmfleet),
        Knob("reactive", "target", (0.3, 0.45, 0.6), 0.6, _reactive),
        Knob("static-peak", "headroom", (1.0, 1.5), 1.0, _static),
        Knob("sageserve", "scale_out", (0.3, 0.5), 0.5, _sageserve),
    )
}
"""The swept knob of each policy (policies without one run once, as they ship)."""


def sweep_factories(
    base: Mapping[str, PolicyFactory], policies: Sequence[str],
    knobs: Mapping[str, Knob] = KNOBS,
) -> dict[str, PolicyFactory]:
    """Run name -> factory: every value of each policy's knob (its default under the
    policy's own name), and the policies without a knob as they are."""
    out: dict[str, PolicyFactory] = {}
    for name in policies:
        knob = knobs.get(name)
        if knob is None:
            out[name] = base[name]
            continue
        for v in knob.values:
            out[knob.run_name(v)] = knob.make(v) if v != knob.default else base[name]
    return out


@dataclass(frozen=True)
class Point:
    """One run on the cost-SLO plane."""

    run: str
    policy: str
    value: float | None
    """The knob's value (None: the policy has no knob)."""
    usd: float
    gpu_hours: float
    slo: float
    """Min over interactive tiers of the share of hours in which the target held."""
    requests_in_slo: float
    """Min over interactive tiers of the share of requests within every target."""

    @property
    def key(self) -> tuple[float, float]:
        """SLO order: hours first, requests to break ties."""
        return (self.slo, self.requests_in_slo)


def slo_level(summary: Mapping[str, Any], interactive: Sequence[str]) -> tuple[float, float]:
    """(hours, requests): the worst interactive tier's share of hours in SLO and share of
    requests within target."""
    tiers = summary["tiers"]
    hours = [float(tiers[t].get("hourly_attainment", math.nan)) for t in interactive
             if t in tiers]
    reqs = [float(tiers[t]["attainment"]) for t in interactive if t in tiers]
    hours = [h for h in hours if not math.isnan(h)]
    return (min(hours) if hours else math.nan, min(reqs) if reqs else math.nan)


def points(cmp: Comparison, knobs: Mapping[str, Knob] = KNOBS) -> list[Point]:
    """Every run of ``cmp`` as a point (its policy and knob value read from its name)."""
    interactive = [t.metadata.name for t in cmp.scenario.snapshot().tiers
                   if t.spec.type == "interactive"]
    out = []
    for run, r in cmp.runs.items():
        policy, _, setting = run.partition("@")
        knob = knobs.get(policy)
        value: float | None = None
        if knob is not None:
            value = float(setting.split("=", 1)[1]) if setting else knob.default
        hours, reqs = slo_level(r.summary, interactive)
        out.append(Point(run, policy, value, float(r.summary["usd_total"]),
                         float(r.summary["gpu_hours_total"]), hours, reqs))
    return out


def frontier(pts: Sequence[Point]) -> list[Point]:
    """The points no other point beats on both cost (USD) and SLO, cheapest first."""
    best: list[Point] = []
    for p in sorted(pts, key=lambda p: (p.usd, tuple(-x for x in p.key))):
        if not best or p.key > best[-1].key:
            best.append(p)
    return best


@dataclass(frozen=True)
class EqualSlo:
    """llmfleet against one baseline at llmfleet's SLO level."""

    baseline: str
    lead: Point
    match: Point | None
    """The baseline's cheapest run at or above the lead's SLO level (None: none reaches it)."""
    best: Point
    """The baseline's run with the highest SLO level."""

    @property
    def against(self) -> Point:
        return self.match or self.best

    @property
    def usd_ratio(self) -> float:
        return self.lead.usd / self.against.usd if self.against.usd else math.nan

    @property
    def gpu_ratio(self) -> float:
        return self.lead.gpu_hours / self.against.gpu_hours if self.against.gpu_hours else math.nan


def equal_slo(pts: Sequence[Point], lead: str = "llmfleet") -> list[EqualSlo]:
    """For each baseline policy, llmfleet's default run against the baseline's cheapest run
    whose SLO level is at least llmfleet's."""
    me = next((p for p in pts if p.run == lead), None)
    if me is None:
        return []
    out = []
    for policy in dict.fromkeys(p.policy for p in pts):
        if policy == lead:
            continue
        mine = [p for p in pts if p.policy == policy]
        ok = [p for p in mine if p.key >= me.key]
        match = min(ok, key=lambda p: p.usd) if ok else None
        best = max(mine, key=lambda p: (p.key, -p.usd))
        out.append(EqualSlo(policy, me, match, best))
    return out


def equal_slo_table(rows: Sequence[EqualSlo]) -> str:
    """The equal-SLO ratios, one line per baseline, with the knob value each needed."""
    if not rows:
        return "equal SLO: no llmfleet run to compare"
    lead = rows[0].lead
    lines = [f"equal SLO: llmfleet {lead.usd:,.0f} USD, {lead.gpu_hours:,.0f} GPU-h at "
             f"{100 * lead.slo:.1f}% of hours ({100 * lead.requests_in_slo:.2f}% of requests) "
             "in SLO, worst interactive tier"]
    for r in rows:
        a = r.against
        knob = KNOBS.get(r.baseline)
        setting = f" ({knob.name}={a.value:g})" if knob is not None and a.value is not None else ""
        head = (f"  vs {r.baseline}{setting}: " if r.match is not None else
                f"  vs {r.baseline}{setting} (never reaches llmfleet's SLO; its best run): ")
        lines.append(f"{head}USD {r.usd_ratio:.2f}x, GPU-h {r.gpu_ratio:.2f}x; it holds "
                     f"{100 * a.slo:.1f}% of hours, {100 * a.requests_in_slo:.2f}% of requests"
                     f" for {a.usd:,.0f} USD")
    return "\n".join(lines)
