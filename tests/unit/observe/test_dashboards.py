"""Dashboards as code: regenerating changes nothing, UIDs are stable, queries use known metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

from llmfleet.api.loading import load_manifests
from llmfleet.api.tier import SLATier
from llmfleet.cli import main
from llmfleet.observe import dashboards as d
from llmfleet.observe import metrics as m
from llmfleet.observe import rules as r
from llmfleet.observe.generate import chart_files, drift

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "llmfleet"


def _tiers() -> list[SLATier]:
    objs = load_manifests([ROOT / "crds" / "samples" / "tiers.yaml"], namespace=None)
    return [o for o in objs if isinstance(o, SLATier)]


def test_regenerating_produces_no_diff() -> None:
    assert drift(CHART, _tiers()) == []
    assert main(["dashboards", "--check"]) == 0


def test_drift_is_detected(tmp_path: Path) -> None:
    files = chart_files(_tiers())
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert drift(tmp_path, _tiers()) == []
    (tmp_path / "dashboards" / "llmfleet-tenants.json").write_text("{}\n")
    (tmp_path / "dashboards" / "llmfleet-old.json").write_text("{}\n")
    assert drift(tmp_path, _tiers()) == [
        "dashboards/llmfleet-old.json",
        "dashboards/llmfleet-tenants.json",
    ]
    assert main(["dashboards", "--check", "--chart", str(tmp_path)]) == 1


def test_required_dashboards_and_stable_uids() -> None:
    boards = d.dashboards()
    assert [b.title for b in boards] == ["Fleet overview", "SLOs per tier", "Tenants", "Regions"]
    uids = [b.uid for b in boards]
    assert len(set(uids)) == len(uids)
    assert uids == [b.uid for b in d.dashboards()]  # same on every build
    assert d.stable_uid("Fleet overview") == uids[0] and len(uids[0]) <= 40
    for b in boards:
        doc = json.loads((CHART / "dashboards" / f"{b.slug}.json").read_text())
        assert doc["uid"] == b.uid
        assert d.render(b) == json.dumps(doc, indent=2, sort_keys=True) + "\n"  # sorted JSON


def test_panels_cover_the_issue() -> None:
    titles = {b.title: [p.title for p in b.panels] for b in d.dashboards()}
    assert {"USD/h planned vs actual", "GPUs by region / pool / capacity type",
            "Replicas desired vs current", "Unmet demand", "Solver duration", "Solver gap",
            "Solver status"} <= set(titles["Fleet overview"])  # fmt: skip
    assert {"TTFT p95 / p99 vs target", "End-to-end p95 / p99 vs target",
            "Error budget remaining (30 d)", "Burn rate (1 h)"} <= set(titles["SLOs per tier"])  # fmt: skip
    assert {"Limit vs usage", "Throttled requests", "Served token share vs weight share"} <= set(
        titles["Tenants"]
    )
    assert {"Demand vs capacity", "Routing weights", "Spot interruptions"} <= set(titles["Regions"])


def test_layout_has_no_overlaps_and_ids_are_unique() -> None:
    for b in d.dashboards():
        doc = d.dashboard_json(b)
        cells = set()
        for p in doc["panels"]:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{b.title}: {p['title']} overlaps"
                    cells.add((x, y))
        assert [p["id"] for p in doc["panels"]] == list(range(1, len(doc["panels"]) + 1))
        assert all(p["description"] and p["targets"] for p in doc["panels"])


def _metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expr (identifiers that are not functions, keywords or labels)."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # drop string literals (label values, regexes)
    words = set(re.findall(r"(?<![\w\"=~{,])([a-z_][a-z0-9_]*(?::[a-z0-9_]+)*)(?![\w(\"])", expr))
    keywords = {"sum", "by", "max", "min", "and", "or", "scalar", "rate", "increase", "time"}
    labels = {"tier", "le", "slo", "region", "pool", "capacity_type", "model_name", "tenant",
              "policy", "status", "origin_region", "target", "rule"}  # fmt: skip
    return {w for w in words if w not in keywords | labels}


def test_queries_read_only_known_metrics() -> None:
    known = set(m.LLMFLEET) | {
        m.VLLM_PROMPT_TOKENS, m.VLLM_GENERATION_TOKENS, m.VLLM_RUNNING, m.VLLM_WAITING,
        f"{m.VLLM_TTFT}_bucket", f"{m.VLLM_TTFT}_count", f"{m.VLLM_E2E}_bucket",
        f"{m.VLLM_E2E}_count", r.BURN_RATE_RECORD, r.BUDGET_REMAINING_RECORD,
        *(r.ratio_record(w) for w in r.WINDOWS),
    }  # fmt: skip
    rules = r.rules_file(_tiers())
    used: set[str] = set()
    for where, expr in [*d.expressions(), *r.expressions(rules)]:
        names = _metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        assert names <= known, f"{where}: unknown metrics {names - known}"
        used |= names
    assert set(m.LLMFLEET) <= used, f"exported but never shown: {set(m.LLMFLEET) - used}"
