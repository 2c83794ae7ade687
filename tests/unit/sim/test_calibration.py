"""The twin's replica against llm-d's BLIS vLLM tables (``llmfleet bench calibrate``).

The table comes from the PyPI package ``llm-d-planner`` (llmfleet's dev extra): without it
these tests fail, naming the package, rather than skip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import Fixed, hand_workload, tiny_scenario
from llmfleet.sim.engine import Engine
from llmfleet.sim.metrics import DONE
from llmfleet.sim.scenario import load_scenario
from llmfleet_bench import blis
from llmfleet_bench.calibrate import (
    SAMPLE_MODELS,
    TOLERANCE,
    Comparison,
    fit_analytic,
    replay,
    replicas,
    saturated,
)

ROOT = Path(__file__).resolve().parents[3]
H100_8B = blis.BlisConfig("meta-llama/llama-3.1-8b-instruct", "H100", 1)


@pytest.fixture(scope="module")
def table() -> blis.BlisTable:
    try:
        return blis.load_table()
    except blis.BlisTableError as e:
        pytest.fail(f"{e}\n(CI installs llmfleet[dev], which has llm-d-planner)")


def test_the_loader_reads_the_installed_table(table):
    assert table.version.startswith("0.3.")
    assert len(table.points) > 1000
    assert len(table.configs()) > 50
    pts = table.of(H100_8B)
    assert len(pts) == 20
    p = pts[0]  # 512/256 tokens at 1 req/s, as the JSON has it
    assert (p.prompt_tokens, p.output_tokens, p.requests_per_second) == (512, 256, 1.0)
    assert p.ttft_mean == pytest.approx(21.891) and p.itl_mean == pytest.approx(9.154)
    # units as the module doc reads them: latencies in ms, tokens/s of output
    assert p.e2e_mean == pytest.approx(p.ttft_mean + p.itl_mean * p.output_tokens, rel=0.05)
    assert p.tokens_per_second == pytest.approx(p.responses_per_second * p.output_tokens,
                                                rel=0.05)


def test_a_missing_or_malformed_table_is_a_clear_error():
    with pytest.raises(blis.BlisTableError, match="no 'benchmarks' list"):
        blis.parse_table({"rows": []}, "x.json")
    row = {"model_hf_repo": "m", "hardware": "H100", "hardware_count": 1}
    with pytest.raises(blis.BlisTableError, match=r"x.json: benchmarks\[0\]: prompt_tokens"):
        blis.parse_table({"benchmarks": [row]}, "x.json")


def test_without_the_package_the_error_names_it(monkeypatch):
    def missing(name: str) -> None:
        raise blis.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(blis.metadata, "distribution", missing)
    with pytest.raises(blis.BlisTableError, match=r"pip install 'llm-d-planner>=0.3,<0.4'"):
        blis.load_table()


def test_saturation_is_read_from_the_table(table):
    assert not any(saturated(p, table) for p in table.of(H100_8B))
    tp4 = table.of(blis.BlisConfig("meta-llama/llama-3.1-8b-instruct", "H100", 4))
    long_ = [p for p in tp4 if p.prompt_tokens == 4096]
    # 20 req/s of 4096-token prompts: TTFT 64 -> 87 ms, ITL 6 -> 11 ms
    assert [saturated(p, table) for p in long_][-2:] == [False, True]


def test_the_sample_profiles_are_the_default_scenarios():
    """The bench replays the default scenario's profiles; the samples must say the same."""
    samples = [d for d in yaml.safe_load_all((ROOT / "crds/samples/models.yaml").read_text())
               if d and d["kind"] == "LLMModel"]
    scenario = [d for d in load_scenario().fleet if d["kind"] == "LLMModel"]
    by_name = {d["spec"]["servedModelName"].lower(): d["spec"]["profiles"] for d in scenario}
    for d in samples:
        name = d["spec"]["servedModelName"].lower()
        if name in SAMPLE_MODELS:
            assert d["spec"]["profiles"] == by_name[name], name


def test_8b_on_one_h100_is_within_tolerance_below_saturation(table):
    rep = replicas()[H100_8B]
    pts = table.of(H100_8B)
    # the extremes of both shapes: low and high rate, short and long prompts
    chosen = [pts[0], pts[9], pts[19]]
    assert {p.prompt_tokens for p in chosen} == {512, 4096}
    for p in chosen:
        c = Comparison(p, replay(p, rep, requests=1500, seed=3), saturated(p, table))
        assert not c.saturated
        assert c.worst() <= TOLERANCE, (p.shape, p.requests_per_second, c.errors())


def test_the_analytic_fit_recovers_the_twins_own_numbers(table):
    """Points made by the twin's low-load formulas give back the numbers they came from."""
    tau0, prefill, k = 0.009, 40_000.0, 1.0
    pts = []
    for p in table.of(H100_8B)[::5]:
        rho = p.requests_per_second * p.prompt_tokens / prefill
        ttft = (k * tau0 + p.prompt_tokens / prefill) * 1e3
        itl = tau0 / (1 - rho) * 1e3
        pts.append(blis.BlisPoint(**{**p.__dict__, "ttft_mean": ttft, "itl_mean": itl}))
    f = fit_analytic(pts, max_seqs=256, saturation=0.25, first_token_steps=k)
    assert f.prefill == pytest.approx(prefill, rel=0.01)
    assert f.tau0 == pytest.approx(tau0, rel=0.01)
    assert f.decode == pytest.approx(0.25 * 256 / tau0, rel=0.01)


@pytest.mark.parametrize("steps", [0.0, 1.0])
def test_first_token_steps_add_unloaded_decode_steps_to_ttft_only(steps):
    """One request alone: TTFT = L_in/P + k s C / D, end-to-end L_in/P + L_out s C / D."""
    sc = tiny_scenario(prefill=1000.0, decode=100.0, max_seqs=4,
                       engine={"first_token_steps": steps})
    wl = hand_workload([1.0], [500], [20])
    rec = Engine(sc.snapshot(), wl, Fixed(1), sc.engine, keep_requests=True).run()
    tau0 = 0.25 * 4 / 100.0  # s C / D: 0.01 s per decode step
    assert rec.status[0] == DONE
    assert rec.ttft[0] == pytest.approx(0.5 + steps * tau0)
    assert rec.e2e[0] == pytest.approx(0.5 + 20 * tau0)
    assert np.all(rec.ttft <= rec.e2e)
