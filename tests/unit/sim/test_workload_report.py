"""Workload synthesis on the real traces, the default scenario, policies and the report."""

from __future__ import annotations

import numpy as np
import pytest

from llmfleet.sim.cli import main as simulate_main
from llmfleet.sim.report import run_policies, summary_table
from llmfleet.sim.scenario import ScenarioError, load_scenario, parse_scenario
from llmfleet.sim.workload import build_workload, stream_workload


@pytest.fixture(scope="module")
def default():
    """The default scenario at 1/32 of its traffic on replicas of 1/32 of their size: the
    same fleet, tenants and curves, fast enough for unit tests."""
    sc = load_scenario()
    return sc.model_copy(update={
        "workload": sc.workload.model_copy(update={"scale": sc.workload.scale / 32}),
        "engine": sc.engine.model_copy(update={"capacity_scale": 32.0}),
    })


@pytest.fixture(scope="module")
def pools():
    return {}  # parsed trace pools shared by this module's builds


def test_default_scenario_shape(default):
    snap = default.snapshot()
    assert len(snap.regions) == 3 and len(snap.models) == 3 and len(snap.tiers) == 3
    assert len(snap.tenants) >= 24
    assert default.workload.days >= 1


def test_workload_is_reproducible_with_a_seed(default, pools):
    a = build_workload(default, days=0.05, seed=5, pools=pools)
    b = build_workload(default, days=0.05, seed=5, pools=pools)
    c = build_workload(default, days=0.05, seed=6, pools=pools)
    assert len(a) > 500
    for f in ("arrival", "tenant", "model", "tier", "origin", "prompt", "output"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert not np.array_equal(a.arrival[:100], c.arrival[:100])
    assert np.all(np.diff(a.arrival) >= 0) and a.arrival[-1] < 0.05 * 86400
    assert a.prompt.min() >= 1 and a.output.min() >= 1


def test_regions_replay_the_trace_at_their_own_local_time(default):
    """The trace's clock is the home region's local time: the same client placed in a region
    14 hours ahead (us-east UTC-5 -> ap-northeast UTC+9) sends the same curve 14 hours
    earlier in UTC."""
    client = default.workload.clients[0]

    def history(region: str) -> np.ndarray:
        moved = client.model_copy(update={"region": region})
        sc = default.model_copy(
            update={"workload": default.workload.model_copy(
                update={"clients": [moved], "history_days": 2})}
        )  # fmt: skip
        wl = build_workload(sc, days=0.01, seed=0)
        ((_key, rates),) = wl.history.items()
        assert wl.history_step == 3600 and rates.shape == (48, 3)
        return rates

    offsets = {r.name: r.spec.utc_offset_hours for r in default.snapshot().regions}
    shift = int(offsets["ap-northeast"] - offsets["us-east"])
    assert shift == 14
    east, tokyo = history("us-east"), history("ap-northeast")
    np.testing.assert_allclose(tokyo[: 48 - shift], east[shift:], rtol=1e-9)
    assert not np.allclose(tokyo, east)  # the curve is not flat: the shift is visible


def test_runs_are_reproducible_and_conserve_requests(default, pools):
    wl = build_workload(default, days=0.1, seed=1, pools=pools)
    r1 = run_policies(default, None, seed=1, workload=wl)  # all six policies
    assert set(r1.runs) == {"llmfleet", "reactive", "siloed", "sageserve", "static-peak", "oracle"}
    r2 = run_policies(default, ["reactive"], seed=1,
                      workload=build_workload(default, days=0.1, seed=1, pools=pools))
    assert r1.runs["reactive"].summary == r2.runs["reactive"].summary
    for run in r1.runs.values():
        s = run.summary
        assert s["completed"] + s["rejected"] + s["in_flight_end"] == s["requests"]
        assert s["usd_total"] >= r1.bound["usd"] and s["gpu_hours_total"] >= r1.bound["gpu_hours"]
    table = summary_table(r1)
    assert "reactive" in table and "1.00x" in table and "fluid lower bound" in table


def test_unknown_policy_and_bad_scenario_are_named(default):
    with pytest.raises(KeyError, match="nope"):
        run_policies(default, ["nope"], days=0.01)
    doc = default.model_dump()
    doc["workload"]["clients"][0]["tenant"] = "ghost"
    bad = type(default).model_validate(doc)
    with pytest.raises(ScenarioError, match="ghost"):
        bad.snapshot()
    with pytest.raises(ScenarioError):
        parse_scenario("- just a list", "x")


def test_simulate_cli_writes_the_report(tmp_path, capsys):
    rc = simulate_main(["--days", "0.05", "--policies", "reactive,static-peak",
                        "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "static-peak" in out and "fluid lower bound" in out
    names = {p.name for p in tmp_path.iterdir()}
    assert {"report.md", "metrics.json", "summary.txt", "cost_over_time.png",
            "gpu_hours_and_usd.png", "demand_vs_capacity_by_region.png", "tenant_service.png",
            "gpus_by_pool-reactive.png", "tenants-reactive.csv"} <= names
    assert any(n.startswith("latency_cdf-") for n in names)


def test_stream_replays_the_same_requests_an_hour_at_a_time(default, pools):
    st = stream_workload(default, days=0.2, seed=3, pools=pools)
    wl = build_workload(default, days=0.2, seed=3, pools=pools)
    chunks = list(st.chunks())
    assert len(chunks) == 5 and len(st) == len(wl) > 1000
    assert [c.offset for c in chunks] == list(np.cumsum([0] + [len(c) for c in chunks[:-1]]))
    for f in ("arrival", "tenant", "prompt", "output", "interaction", "call_index"):
        assert np.array_equal(np.concatenate([getattr(c, f) for c in chunks]), getattr(wl, f)), f
    again = np.concatenate([c.arrival for c in st.chunks()])  # every pass is the same
    assert np.array_equal(again, wl.arrival)
    # interactions run on across chunk boundaries: ids are a call's first index, in order
    ids, calls = wl.interaction, wl.call_index
    assert np.all(ids <= np.arange(len(wl))) and (calls > 0).any()
    later = np.nonzero(calls > 0)[0]
    assert np.all(wl.tenant[ids[later]] == wl.tenant[later])
    a = run_policies(default, ["reactive"], seed=3, workload=st).runs["reactive"].summary
    b = run_policies(default, ["reactive"], seed=3, workload=wl).runs["reactive"].summary
    assert a == b


def test_policies_in_parallel_processes_measure_what_a_serial_run_does(default, pools):
    wl = build_workload(default, days=0.05, seed=2, pools=pools)
    names = ["reactive", "static-peak", "siloed"]
    seen: list[tuple[str, float]] = []
    par = run_policies(default, names, seed=2, workload=wl, workers=2,
                       progress=lambda n, f: seen.append((n, f)))
    ser = run_policies(default, names, seed=2, workload=wl, workers=1)
    assert list(par.runs) == names  # in the order asked, whatever finished first
    for n in names:
        a, b = par.runs[n].summary, ser.runs[n].summary
        assert a == b, n
        assert par.runs[n].recorder.wl is wl  # the parent's workload is re-attached
    assert {n for n, f in seen if f == 1.0} == set(names)  # progress came back from each
