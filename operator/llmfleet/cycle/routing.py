"""The router's shares applied to one cycle's demand (pure).

A routed SLATier (``spec.routing``) lets the router service answer some of its requests to
the reference model with cheaper candidates. The planner sizes the fleet for what the router
does: every forecast flow ``(referenceModel, origin, tier)`` of a tier with
:class:`~llmfleet.routing.models.serving.TierShares` becomes one flow per candidate model,
its rates multiplied by the candidate's shares (:meth:`TierShares.multipliers`): requests by
the request share (client requests: conserved, summed over the candidates they are the
flow's), prompt tokens by the prompt share (once per request whatever best-of-n's ``n``:
one prefill, the samples share the prompt's KV blocks; ``prefill_per_sample`` counts ``n``),
output tokens by the per-sample output share times ``n``. A candidate flow that also has
requests of its own (tenants naming the small model) is summed with them; the reference keeps
its own share.

**After forecasting, not before.** The gateway counts demand per *requested* model, before
the router picks one (the demand profile's queries must read the requested model's label,
not the routed one; with the routed one the history is split already and the shares must not
be applied). Splitting the forecasts keeps each flow's history -- and its forecaster's
backtests -- intact across a change of the shares (a recalibration, a new candidate),
and applies the shares of now to the whole horizon. The upper quantile of each flow is split
like the point forecast (a fixed share of a flow has its quantiles in proportion); the sum of
a routed and a direct flow adds their quantiles (as if they peaked together: conservative).
The per-request token mix the capacity model sees follows (n x output per request for
best-of-n: each of the n sequences is as long as one answer, so the e2e and concurrency
model is pessimistic there, never optimistic).

**Served-labelled demand** (``RouterShares.demand_label == "served"``, the digital twin,
whose history counts the model that answered): the flows of a routed tier are first folded
back into what was requested -- per origin, the sum of the tier's candidate flows, each rate
divided by the sum of the shares' multipliers of that rate (requests sum to 1, prompt tokens
to 1, output tokens to what the candidates answer over what the reference would) -- and that
reference flow is split as above. Valid when every request of the routed tier asked for its
reference (the twin's scenarios check it); the split then gives each candidate what the
calibrated shares say, not what the sampled history happened to show.

Shares that do not fit the fleet of the cycle are not applied, and say why
(:attr:`RoutingApplied.notes`): a tier without ``spec.routing`` or with another reference; a
candidate that is not among the tier's ``spec.routing.candidates`` or not planned this cycle
(left out by screening) gives its share back to the reference. Tenants whose
``spec.models`` leave a candidate out are not seen (flows are per tier, not per tenant): the
tier's shares are the calibration's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from llmfleet.api.references import FleetSnapshot
from llmfleet.cycle.demand import Demand
from llmfleet.forecast.types import DemandForecast, DemandRates, FlowKey
from llmfleet.plan.explain import RoutedShare
from llmfleet.routing.models.serving import RouterShares, TierShares

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoutingApplied:
    """What the router's shares did to one cycle's demand."""

    shares: Mapping[FlowKey, RoutedShare] = field(default_factory=dict)
    """Per flow after routing: the share of its load routing sent there, the load it took
    away (:func:`llmfleet.plan.explain.routed_replicas` attributes replicas with it)."""
    tiers: tuple[str, ...] = ()
    """The tiers whose demand was split."""
    notes: tuple[str, ...] = ()
    """Shares not applied, and why."""

    @property
    def message(self) -> str:
        text = (
            f"router shares applied to tier(s) {', '.join(self.tiers)}"
            if self.tiers
            else "no router shares applied"
        )
        return text + (f" ({'; '.join(self.notes)})" if self.notes else "")


def _scaled(r: DemandRates, rq: float, pr: float, ou: float) -> DemandRates:
    return DemandRates(
        requests_per_s=tuple(v * rq for v in r.requests_per_s),
        prompt_tokens_per_s=tuple(v * pr for v in r.prompt_tokens_per_s),
        output_tokens_per_s=tuple(v * ou for v in r.output_tokens_per_s),
    )


def _summed(a: DemandRates, b: DemandRates) -> DemandRates:
    return DemandRates(
        requests_per_s=tuple(
            x + y for x, y in zip(a.requests_per_s, b.requests_per_s, strict=True)
        ),
        prompt_tokens_per_s=tuple(
            x + y for x, y in zip(a.prompt_tokens_per_s, b.prompt_tokens_per_s, strict=True)
        ),
        output_tokens_per_s=tuple(
            x + y for x, y in zip(a.output_tokens_per_s, b.output_tokens_per_s, strict=True)
        ),
    )


def _load0(f: DemandForecast, deadline: bool) -> float:
    r = f.point if deadline else f.upper
    return float(r.prompt_tokens_per_s[0] + r.output_tokens_per_s[0]) if len(r) else 0.0


def _fitted(
    tier_shares: TierShares, snapshot: FleetSnapshot
) -> tuple[dict[str, tuple[float, float, float]] | None, list[str]]:
    """The tier's multipliers restricted to what the fleet plans, and notes."""
    tier = next((t for t in snapshot.tiers if t.name == tier_shares.tier), None)
    name = tier_shares.tier
    if tier is None:
        return None, [f"tier {name} is not planned"]
    routing = tier.spec.routing
    if routing is None:
        return None, [f"tier {name} has no spec.routing"]
    if routing.reference_model != tier_shares.reference:
        return None, [
            f"tier {name}: shares are for reference {tier_shares.reference}, "
            f"spec.routing.referenceModel is {routing.reference_model}"
        ]
    models = {m.name for m in snapshot.models}
    if tier_shares.reference not in models:
        return None, [f"tier {name}: reference {tier_shares.reference} is not planned"]
    mult = tier_shares.multipliers()
    notes = []
    ref = tier_shares.reference
    for model in sorted(mult):
        if model == ref:
            continue
        why = (
            "not among spec.routing.candidates"
            if model not in routing.candidates
            else "not planned this cycle"
            if model not in models
            else ""
        )
        if why:
            # back to the reference: one sample each (the answers' measured length)
            mult.pop(model)
            opts = [o for o in tier_shares.options if o.model == model]
            rq = sum(o.requests for o in opts)
            r0, p0, o0 = mult[ref]
            mult[ref] = (
                r0 + rq,
                p0 + sum(o.prompt_tokens for o in opts),
                o0 + sum(o.output_tokens for o in opts),
            )
            notes.append(f"tier {name}: {model} {why}, its {rq:.0%} stays on {ref}")
    return mult, notes


def _folded(
    forecasts: Sequence[DemandForecast], shares: RouterShares, tiers: Sequence[str]
) -> list[DemandForecast]:
    """``forecasts`` with each routed tier's candidate flows folded into its reference flow
    per origin (module docstring, **served-labelled demand**)."""
    fold: dict[str, tuple[str, dict[str, tuple[float, float, float]]]] = {}
    for ts in shares.tiers:
        if ts.tier in tiers:
            fold[ts.tier] = (ts.reference, ts.multipliers())
    out: list[DemandForecast] = []
    groups: dict[tuple[str, str], list[DemandForecast]] = {}
    for f in forecasts:
        entry = fold.get(f.key.tier)
        if entry is not None and f.key.model in entry[1]:
            groups.setdefault((f.key.tier, f.key.origin), []).append(f)
        else:
            out.append(f)
    for (tier, origin), parts in sorted(groups.items()):
        ref, mult = fold[tier]
        sums = [sum(m[i] for m in mult.values()) for i in range(3)]
        inv = [1.0 / v if v > 0 else 0.0 for v in sums]
        point, upper = parts[0].point, parts[0].upper
        for f in parts[1:]:
            point, upper = _summed(point, f.point), _summed(upper, f.upper)
        out.append(parts[0].model_copy(update={
            "key": FlowKey(model=ref, origin=origin, tier=tier),
            "point": _scaled(point, *inv),
            "upper": _scaled(upper, *inv),
        }))  # fmt: skip
    return out


def route_forecasts(
    forecasts: Sequence[DemandForecast], snapshot: FleetSnapshot, shares: RouterShares
) -> tuple[tuple[DemandForecast, ...], RoutingApplied]:
    """Every reference flow of a tier with shares, split among its candidates (module
    docstring); other flows unchanged. Returns the forecasts, sorted by flow, and what was
    done."""
    deadline = {t.name for t in snapshot.tiers if t.spec.type == "deadline"}
    plans: dict[str, dict[str, tuple[float, float, float]]] = {}
    notes: list[str] = []
    for ts in shares.tiers:
        mult, why = _fitted(ts, snapshot)
        notes.extend(why)
        if mult is not None:
            plans[ts.tier] = mult
    horizons = {(f.start, f.step_seconds, f.steps) for f in forecasts}
    if plans and len(horizons) > 1:
        notes.append("the flows' forecasts cover different steps: not split")
        plans = {}
    if not plans:
        return tuple(forecasts), RoutingApplied(notes=tuple(notes))
    if shares.demand_label == "served":
        forecasts = _folded(forecasts, shares, sorted(plans))
    out: dict[FlowKey, DemandForecast] = {}
    added: dict[FlowKey, float] = {}
    removed: dict[FlowKey, float] = {}

    def put(f: DemandForecast) -> None:
        have = out.get(f.key)
        if have is None:
            out[f.key] = f
            return
        out[f.key] = have.model_copy(
            update={"point": _summed(have.point, f.point), "upper": _summed(have.upper, f.upper)}
        )

    refs = {ts.tier: ts.reference for ts in shares.tiers if ts.tier in plans}
    routed = [f for f in forecasts if refs.get(f.key.tier) == f.key.model]
    for f in forecasts:
        if refs.get(f.key.tier) != f.key.model:
            put(f)
    for f in routed:
        mult = plans[f.key.tier]
        is_deadline = f.key.tier in deadline
        before = _load0(f, is_deadline)
        kept = 0.0
        for model, (rq, pr, ou) in mult.items():
            key = FlowKey(model=model, origin=f.key.origin, tier=f.key.tier)
            part = f.model_copy(
                update={
                    "key": key,
                    "point": _scaled(f.point, rq, pr, ou),
                    "upper": _scaled(f.upper, rq, pr, ou),
                }
            )
            put(part)
            load = _load0(part, is_deadline)
            if model == f.key.model:
                kept = load
            else:
                added[key] = added.get(key, 0.0) + load
        # the load that left the reference, in its own tokens (not the candidates' n x output)
        removed[f.key] = removed.get(f.key, 0.0) + max(before - kept, 0.0)
    record: dict[FlowKey, RoutedShare] = {}
    for key, f in out.items():
        a, r = added.get(key, 0.0), removed.get(key, 0.0)
        if not a and not r:
            continue
        load = _load0(f, key.tier in deadline)
        record[key] = RoutedShare(
            added=min(a / load, 1.0) if load > 0 else 0.0,
            removed=r / load if load > 0 else 0.0,
            load=load,
            removed_load=r,
        )
    ordered = tuple(out[k] for k in sorted(out, key=lambda k: (k.model, k.origin, k.tier)))
    return ordered, RoutingApplied(record, tuple(sorted(plans)), tuple(notes))


def route_demand(demand: Demand, snapshot: FleetSnapshot, shares: RouterShares | None) -> Demand:
    """``demand`` with the router's shares applied (None: unchanged), what was done in
    :attr:`Demand.routing` and its message."""
    if shares is None or not shares.tiers:
        return demand
    try:
        forecasts, applied = route_forecasts(demand.forecasts, snapshot, shares)
    except Exception as err:  # the cycle never raises: plan the demand as read
        log.exception("applying the router shares")
        applied = RoutingApplied(notes=(f"not applied: {type(err).__name__}: {err}",))
        return replace(demand, routing=applied, message=f"{demand.message}; {applied.message}")
    return replace(
        demand,
        forecasts=forecasts,
        routing=applied,
        message=f"{demand.message}; {applied.message}",
    )
