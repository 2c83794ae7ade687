"""Demand implied by the TenantQuotas."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmfleet.api.loading import load_manifests, snapshot_of
from llmfleet.forecast.synthetic import diurnal, quota_demand

SAMPLES = Path(__file__).resolve().parents[3] / "crds" / "samples"


def test_each_region_peaks_in_its_own_afternoon():
    assert diurnal(14, 0, 0.3) == pytest.approx(1.0)
    assert diurnal(2, 0, 0.3) == pytest.approx(0.3)
    assert diurnal(5, 9, 0.3) == pytest.approx(1.0)  # Tokyo 14:00 is 05:00 UTC


def test_quota_demand_conserves_the_budgets():
    snap = snapshot_of(load_manifests([SAMPLES], "llmfleet"))
    flows = quota_demand(snap, start=0, steps=24, step_seconds=3600, load=0.5, trough=1.0)
    total = sum(f.point.prompt_tokens_per_s[0] + f.point.output_tokens_per_s[0] for f in flows)
    budget = sum(t.spec.budgets.tokens_per_minute or 0 for t in snap.tenants) / 60
    assert total == pytest.approx(0.5 * budget)
    assert all(
        u >= p
        for f in flows
        for p, u in zip(f.point.requests_per_s, f.upper.requests_per_s, strict=True)
    )
    tiers = {t.name for t in snap.tiers}
    models = {m.name for m in snap.models}
    assert all(f.key.tier in tiers and f.key.model in models for f in flows)
