"""The engine's behaviour is pinned: fixed short slices of the embedded scenarios give the
same summary metrics (counts exactly; TTFT/e2e quantiles, means, GPU-hours, USD, Jain within
float tolerance) as the engine before it was made faster (``data/engine_reference.json``,
recorded at commit 65b7862 with ``Engine(...).run().summary()`` plus ``per_tenant()``).

The cases cover what the hot path does differently per policy: the reactive baseline (pool
lanes, deadline queue), llmfleet on the default fleet (weighted routes drawn from the
engine's random stream, spill, throttles), siloed on the storm fleet under a spot storm in
every region (interruptions, retries, queue-full) and llmfleet there (the gateway throttles
the abuser, spot losses).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from llmfleet.sim.engine import Engine
from llmfleet.sim.policies import policy_factories
from llmfleet.sim.scenario import Scenario, SpotStorm, load_scenario
from llmfleet.sim.workload import stream_workload

REFERENCE = json.loads((Path(__file__).parent / "data" / "engine_reference.json").read_text())
STORM_REGIONS = ("us-west", "sa-east", "ap-south", "eu-north")
CASES: dict[str, tuple[str, float, float, bool, str]] = {
    # name: (scenario, traffic factor, days, spot storm in every region, policy)
    "default-reactive": ("default", 0.1, 0.05, False, "reactive"),
    "default-llmfleet": ("default", 0.1, 0.05, False, "llmfleet"),
    "storm-siloed": ("storm", 0.5, 0.1, True, "siloed"),
    "storm-llmfleet": ("storm", 0.5, 0.04, True, "llmfleet"),
}


def _scenario(name: str, factor: float, days: float, storms: bool) -> Scenario:
    sc = load_scenario(name)
    wl = sc.workload.model_copy(update={"scale": sc.workload.scale * factor, "days": days})
    upd: dict[str, Any] = {"workload": wl}
    if storms:
        upd["engine"] = sc.engine.model_copy(update={"spot_storms": [
            SpotStorm(region=r, start_hour=0.2, hours=1, rate_per_hour=30.0)
            for r in STORM_REGIONS
        ]})
    return sc.model_copy(update=upd)


def _same(got: Any, want: Any, where: str) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for k in want:
            _same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list | tuple) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _same(g, w, f"{where}[{i}]")
    elif isinstance(want, int):  # counts (and bools): exactly
        assert got == want, where
    elif isinstance(want, float):
        if math.isnan(float(want)):
            assert math.isnan(float(got)), where
        else:
            assert float(got) == pytest.approx(float(want), rel=1e-9, abs=1e-12), where
    else:
        assert got == want, where


@pytest.mark.parametrize("case", sorted(CASES))
def test_summary_equals_the_reference_engine(case: str) -> None:
    name, factor, days, storms, policy = CASES[case]
    sc = _scenario(name, factor, days, storms)
    snap = sc.snapshot()
    wl = stream_workload(sc, snap)
    rec = Engine(snap, wl, policy_factories()[policy](sc, wl), sc.engine,
                 seed=sc.workload.seed).run()
    got = rec.summary()
    got["per_tenant"] = rec.per_tenant()
    got = json.loads(json.dumps(got, default=lambda x: None))  # the reference's types
    _same(got, REFERENCE[case], case)
