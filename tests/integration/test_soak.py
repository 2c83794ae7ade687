"""``llmfleet bench soak`` in small: the operator as a process against its own control plane
and Prometheus (each behind a fault proxy) for ~90 s, through one apiserver outage of ~20 s
(SIGKILL, restart on the same data) and one period of Prometheus answers with non-numeric
sample values. The loop never restarts, no object is lost or duplicated, and the fleet
converges after each fault within the benchmark's own target."""

from __future__ import annotations

import json
from pathlib import Path

from llmfleet_bench import soak


def test_a_short_soak_survives_an_apiserver_outage_and_prometheus_garbage(tmp_path: Path):
    out = tmp_path / "soak.json"
    code = soak.main(
        ["--minutes", "1.5", "--seed", "7", "--faults", "apiserver-kill:20,prometheus-values:20",
         "--json", str(out), "--workdir", str(tmp_path / "run")]
    )  # fmt: skip
    r = json.loads(out.read_text())
    faults = {f["kind"]: f for f in r["faults"]}
    assert set(faults) == {"apiserver-kill", "prometheus-values"}, r["faults"]
    # the outage was real: the apiserver was down ~20 s and restarted on the same data
    assert 20 <= faults["apiserver-kill"]["seconds"] < 60
    assert r["proxies"]["apiserver"].get("upstream-down", 0) > 0, r["proxies"]
    # the garbage reached the operator: some Prometheus answers had non-numeric values
    assert faults["prometheus-values"]["requests_faulted"] > 0, faults["prometheus-values"]

    loop = r["loop"]
    assert loop["operator_exits"] == 0, loop["exits"]
    assert loop["healthz"]["false_alarms"] == 0, loop["healthz"]
    assert loop["healthz"]["ok"] > 0
    assert r["metrics"]["llmfleet_planning_cycle_crashes_total"] == 0, r["operator_log"]
    assert r["operator_log"]["cycle_crashes"] == 0, r["operator_log"]

    target = soak.converge_target(r["interval_seconds"]).limit
    for f in r["faults"]:
        assert f["converged_after_s"] is not None, f
        assert f["converged_after_s"] <= target, f
        assert (f["lost"], f["duplicated"]) == (0, 0), f
    assert r["totals"]["not_converged"] == 0 and r["totals"]["unchecked"] == 0
    assert r["cycles"]["converged"] >= 2, r["cycles"]
    assert code == 0
