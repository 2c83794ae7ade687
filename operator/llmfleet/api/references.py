"""Cross-object checks: does every name an object refers to exist, and fit?

The apiserver validates each object on its own (schema + CEL). What it cannot see is
whether a TenantQuota's tier exists or an LLMModel's GPU type is offered by any Region.
:func:`check_references` answers that from a :class:`FleetSnapshot` — a pure function,
so the operator, the simulator and ``llmfleet validate`` share it.

Namespaced kinds refer to objects in their own namespace; Regions are cluster-scoped.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from llmfleet.api.conditions import Reason
from llmfleet.api.model import LLMModel
from llmfleet.api.plan import FleetPlan
from llmfleet.api.policy import FleetPolicy
from llmfleet.api.region import Region
from llmfleet.api.resource import Resource
from llmfleet.api.tenant import TenantQuota
from llmfleet.api.tier import SLATier


@dataclass(frozen=True, order=True)
class ObjectKey:
    """Identity of one object."""

    kind: str
    namespace: str | None
    name: str

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {ns}{self.name}"

    @classmethod
    def of(cls, obj: Resource) -> ObjectKey:
        return cls(obj.info.kind, obj.namespace, obj.name)


@dataclass(frozen=True)
class Problem:
    """One broken reference: a CamelCase ``reason`` and a sentence naming the field."""

    reason: str
    message: str


@dataclass
class FleetSnapshot:
    """Every llmfleet object the checker may consult."""

    regions: list[Region] = field(default_factory=list)
    models: list[LLMModel] = field(default_factory=list)
    tiers: list[SLATier] = field(default_factory=list)
    tenants: list[TenantQuota] = field(default_factory=list)
    policies: list[FleetPolicy] = field(default_factory=list)
    plans: list[FleetPlan] = field(default_factory=list)

    def all(self) -> list[Resource]:
        out: list[Resource] = []
        out += self.regions
        out += self.models
        out += self.tiers
        out += self.tenants
        out += self.policies
        out += self.plans
        return out


def _names(
    objs: list[Resource] | list[SLATier] | list[LLMModel] | list[FleetPolicy],
) -> dict[str | None, set[str]]:
    by_ns: dict[str | None, set[str]] = defaultdict(set)
    for o in objs:
        by_ns[o.namespace].add(o.name)
    return by_ns


def _missing(kind: str, field_path: str, names: list[str], known: set[str]) -> list[Problem]:
    unknown = sorted(set(names) - known)
    if not unknown:
        return []
    return [
        Problem(
            f"Unknown{kind}",
            f"{field_path} names {kind} {', '.join(repr(n) for n in unknown)}, which does not exist",
        )
    ]


def check_references(snap: FleetSnapshot) -> dict[ObjectKey, list[Problem]]:
    """Problems per object; every object of the snapshot has an entry (empty = valid)."""
    region_by_name = {r.name: r for r in snap.regions}
    regions = set(region_by_name)
    models = _names(snap.models)
    tiers = _names(snap.tiers)
    policies = _names(snap.policies)
    gpu_types_by_region = {r.name: {p.gpu_type for p in r.spec.pools} for r in snap.regions}
    out: dict[ObjectKey, list[Problem]] = {ObjectKey.of(o): [] for o in snap.all()}

    for r in snap.regions:
        peers = [lat.region for lat in r.spec.latencies]
        out[ObjectKey.of(r)] += _missing("Region", "spec.latencies[].region", peers, regions)
        if r.name in peers:
            out[ObjectKey.of(r)].append(
                Problem("SelfLatency", "spec.latencies lists the region itself")
            )

    placeable: set[tuple[str | None, str]] = set()
    for m in snap.models:
        key = ObjectKey.of(m)
        allowed = m.spec.allowed_regions or sorted(regions)
        out[key] += _missing("Region", "spec.allowedRegions", m.spec.allowed_regions, regions)
        offered = set().union(*(gpu_types_by_region.get(r, set()) for r in allowed))
        for prof in m.spec.profiles:
            if prof.gpu_type not in offered:
                out[key].append(
                    Problem(
                        "UnknownGPUType",
                        f"spec.profiles[gpuType={prof.gpu_type}]: no pool of "
                        f"{'the allowed ' if m.spec.allowed_regions else 'any '}Region offers "
                        f"GPU type {prof.gpu_type!r}",
                    )
                )
        if any(p.gpu_type in offered for p in m.spec.profiles):
            placeable.add((m.namespace, m.name))
        elif regions:
            out[key].append(
                Problem("Unplaceable", "no allowed Region has a pool this model can run on")
            )

    for tier in snap.tiers:
        out[ObjectKey.of(tier)] += tier_routing_problems(tier, snap, placeable)

    for t in snap.tenants:
        key = ObjectKey.of(t)
        ns = t.namespace
        out[key] += _missing("SLATier", "spec.tier", [t.spec.tier], tiers.get(ns, set()))
        out[key] += _missing("LLMModel", "spec.models", t.spec.models, models.get(ns, set()))
        out[key] += _missing(
            "Region", "spec.origins[].region", [o.region for o in t.spec.origins], regions
        )

    for pol in snap.policies:
        key = ObjectKey.of(pol)
        if not regions:
            out[key].append(Problem("NoRegions", "there is no Region to plan for"))
        if not models.get(pol.namespace):
            out[key].append(
                Problem("NoModels", f"namespace {pol.namespace!r} has no LLMModel to plan for")
            )

    for plan in snap.plans:
        out[ObjectKey.of(plan)] += _missing(
            "FleetPolicy", "spec.policy", [plan.spec.policy], policies.get(plan.namespace, set())
        )
    return out


def tier_routing_problems(
    tier: SLATier, snap: FleetSnapshot, placeable: set[tuple[str | None, str]]
) -> list[Problem]:
    """What is inconsistent between a tier's ``spec.routing`` and the other objects: each
    candidate exists, has an evaluation on the tier's metric and a routing cost, can be
    served in some Region, has a served name of its own (the router's header tells the
    candidates apart by it). (A tenant whose ``spec.models`` leaves a candidate out is no
    error: the router never sends its requests there.)
    ``placeable``: (namespace, name) of the LLMModels some allowed Region can run."""
    routing = tier.spec.routing
    if routing is None:
        return []
    ns = tier.namespace
    models = {m.name: m for m in snap.models if m.namespace == ns}
    field = "spec.routing.candidates"
    out = [
        Problem(Reason.ROUTING_UNKNOWN_MODEL, p.message)
        for p in _missing("LLMModel", field, routing.candidates, set(models))
    ]
    known = [models[c] for c in routing.candidates if c in models]
    no_eval = [
        m.name for m in known if routing.metric not in {e.metric for e in m.spec.evaluations}
    ]
    if no_eval:
        out.append(Problem(
            Reason.ROUTING_NO_EVALUATION,
            f"{field}: LLMModel {', '.join(repr(n) for n in no_eval)} has no spec.evaluations "
            f"entry for metric {routing.metric!r} (spec.routing.metric)",
        ))  # fmt: skip
    no_cost = [m.name for m in known if m.spec.routing_cost is None]
    if no_cost:
        out.append(Problem(
            Reason.ROUTING_NO_COST,
            f"{field}: LLMModel {', '.join(repr(n) for n in no_cost)} has no spec.routingCost "
            "(the router weighs each candidate's cost per request)",
        ))  # fmt: skip
    if snap.regions:
        stuck = [m.name for m in known if (m.namespace, m.name) not in placeable]
        if stuck:
            out.append(Problem(
                Reason.ROUTING_UNPLACEABLE,
                f"{field}: LLMModel {', '.join(repr(n) for n in stuck)} cannot be served in any "
                "Region (no allowed Region has a pool of its spec.profiles' GPU types)",
            ))  # fmt: skip
    served: dict[str, list[str]] = defaultdict(list)
    for m in known:
        served[m.spec.served_model_name].append(m.name)
    for name, shared in sorted(served.items()):
        if len(shared) > 1:
            out.append(Problem(
                Reason.ROUTING_SHARED_SERVED_NAME,
                f"{field}: LLMModels {', '.join(repr(n) for n in shared)} share "
                f"spec.servedModelName {name!r}; the gateway routes on it, so each candidate "
                "needs its own",
            ))  # fmt: skip
    return out
