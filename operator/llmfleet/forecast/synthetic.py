"""Demand implied by the TenantQuotas, for planning without history (``llmfleet explain``,
first plans of a new fleet, examples).

Each tenant sends ``load`` x its ``tokensPerMinute`` budget at its local daily peak, split
over its origins and allowed models (evenly), tokens split into prompt and output by its
application profile. Over the day the rate follows

    rate(h) = peak * (trough + (1 - trough) * (1 + cos(2*pi*(h_local - peak_hour)/24)) / 2)

with ``h_local = h_utc + utcOffsetHours`` of the origin region, so every region peaks in
its own afternoon. The upper quantile is ``point * (1 + headroom)``. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections import defaultdict

from llmfleet.api.references import FleetSnapshot
from llmfleet.forecast.types import DemandForecast, DemandRates, FlowKey

PEAK_HOUR = 14.0


def diurnal(hour_utc: float, utc_offset: float, trough: float) -> float:
    """Share of the daily peak at ``hour_utc`` for a region at ``utc_offset`` (0..1)."""
    local = (hour_utc + utc_offset) % 24
    return trough + (1 - trough) * (1 + math.cos(2 * math.pi * (local - PEAK_HOUR) / 24)) / 2


def quota_demand(
    snapshot: FleetSnapshot,
    *,
    start: float,
    steps: int,
    step_seconds: int,
    load: float = 0.5,
    trough: float = 0.3,
    headroom: float = 0.2,
    quantile: float = 0.9,
) -> list[DemandForecast]:
    """One forecast per (model, origin, tier) flow with demand, sorted by flow."""
    offsets = {r.name: r.spec.utc_offset_hours for r in snapshot.regions}
    models = [m.name for m in snapshot.models]
    # flow -> (requests/s, prompt tokens/s, output tokens/s) at peak
    peak: dict[FlowKey, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for t in snapshot.tenants:
        tpm = t.spec.budgets.tokens_per_minute
        if not tpm:
            continue
        app = t.spec.application
        prompt = app.mean_input_tokens + app.mean_system_tokens
        per_call = prompt + app.mean_output_tokens
        if per_call <= 0:
            continue
        tokens_per_s = load * tpm / 60
        origins = [(o.region, o.fraction) for o in t.spec.origins] or [
            (r, 1 / len(offsets)) for r in offsets
        ]
        targets = [m for m in (t.spec.models or models) if m in models]
        for region, fraction in origins:
            if region not in offsets:
                continue
            for model in targets:
                share = tokens_per_s * fraction / len(targets)
                acc = peak[FlowKey(model=model, origin=region, tier=t.spec.tier)]
                acc[0] += share / per_call
                acc[1] += share * prompt / per_call
                acc[2] += share * app.mean_output_tokens / per_call
    out = []
    for key in sorted(peak, key=lambda k: (k.model, k.origin, k.tier)):
        req, pro, gen = peak[key]
        shape = [
            diurnal(((start + (i + 0.5) * step_seconds) / 3600) % 24, offsets[key.origin], trough)
            for i in range(steps)
        ]
        point = DemandRates(
            requests_per_s=tuple(req * s for s in shape),
            prompt_tokens_per_s=tuple(pro * s for s in shape),
            output_tokens_per_s=tuple(gen * s for s in shape),
        )
        upper = DemandRates(
            requests_per_s=tuple(v * (1 + headroom) for v in point.requests_per_s),
            prompt_tokens_per_s=tuple(v * (1 + headroom) for v in point.prompt_tokens_per_s),
            output_tokens_per_s=tuple(v * (1 + headroom) for v in point.output_tokens_per_s),
        )
        out.append(
            DemandForecast(
                key=key,
                start=start,
                step_seconds=step_seconds,
                point=point,
                upper=upper,
                quantile=quantile,
                method="naive",
            )
        )
    return out
