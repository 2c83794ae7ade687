"""`llmfleet explain` plans the sample fleet and says why replicas exist."""

from __future__ import annotations

import json
import re

import yaml

from llmfleet.cli import main

REASONS = {"min-replicas", "guarantee", "latency", "spot-cap", "deadline", "demand"}


def _replica_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("- ")]


def test_explain_names_the_binding_reasons(capsys):
    assert main(["explain", "--model", "llama-3-3-70b"]) == 0
    out = capsys.readouterr().out
    assert "llama-3-3-70b @ us-east" in out
    assert "USD/h at step 0" in out
    assert "llama-3-1-8b @" not in out
    lines = _replica_lines(out)
    assert lines
    for line in lines:
        m = re.search(r"because of ([a-z-]+):", line)
        assert m and m.group(1) in REASONS, line


def test_explain_says_min_replicas_keep_an_idle_region(capsys):
    # The 8B model's load is small for its (calibrated) profiles: in at least one region its
    # share is below one replica, and minReplicasPerRegion=1 keeps one replica there; explain
    # says so for every such region (which ones depends on the plan's routing).
    assert main(["explain", "--model", "llama-3-1-8b"]) == 0
    lines = _replica_lines(capsys.readouterr().out)
    bound = [line for line in lines if "because of min-replicas" in line]
    assert bound
    for line in bound:
        assert ": 1 replica(s)" in line and "minReplicasPerRegion=1" in line, line
        m = re.search(r"load needs ([0-9.]+) replica", line)
        assert m and float(m.group(1)) < 1.0, line


def test_explain_reports_bad_manifests(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: llmfleet.dev/v1alpha1\nkind: Region\nmetadata: {name: x}\nspec: {location: y, pools: []}\n"
    )
    assert main(["explain", str(bad)]) == 1
    assert "pools" in capsys.readouterr().err


def test_operator_refuses_a_context_it_cannot_honour(capsys):
    assert main(["operator", "--context", "prod"]) == 2
    assert "current-context" in capsys.readouterr().err


def _shares(small: float) -> dict:
    big = round(1.0 - small, 6)
    return {
        "apiVersion": "llmfleet.dev/router-shares/v1",
        "tiers": {"interactive-normal": {"reference": "llama-3-3-70b", "options": [
            {"model": "llama-3-3-70b", "requests": big, "promptTokens": big, "outputTokens": big},
            {"model": "llama-3-1-8b", "requests": small, "promptTokens": small,
             "outputTokens": small},
        ]}},
    }  # fmt: skip


def test_explain_says_how_many_replicas_exist_because_of_routing(tmp_path, capsys):
    path = tmp_path / "shares.json"
    path.write_text(json.dumps(_shares(0.3)))
    assert main(["explain", "--router-shares", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"--router-shares {path}: router shares applied to tier(s) interactive-normal" in out
    summary = [line for line in out.splitlines() if line.startswith("routing: ")]
    assert len(summary) == 1
    m = re.search(r"([0-9.]+) replica\(s\) of llama-3-1-8b exist because of routing", summary[0])
    assert m and float(m.group(1)) > 0, summary
    assert "it spares about" in summary[0] and "of llama-3-3-70b" in summary[0]
    assert "    routing: " in out  # and per (model, region) under its replica line


def test_explain_reads_the_shares_from_the_router_config_map(tmp_path, capsys):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "llmfleet-router"},
          "data": {"shares.json": json.dumps(_shares(0.2))}}  # fmt: skip
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(cm))
    assert main(["explain", "--router-shares", str(path), "--model", "llama-3-1-8b"]) == 0
    out = capsys.readouterr().out
    assert "exist because of routing" in out and "llama-3-3-70b @" not in out


def test_explain_names_a_bad_shares_file(tmp_path, capsys):
    path = tmp_path / "shares.json"
    bad = _shares(0.3)
    bad["tiers"]["interactive-normal"]["options"][0]["requests"] = 0.9  # sums to 1.2
    path.write_text(json.dumps(bad))
    assert main(["explain", "--router-shares", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"--router-shares {path}: tiers.interactive-normal: " in err
    assert "requests shares sum to 1.2" in err
    assert main(["explain", "--router-shares", str(tmp_path / "none.json")]) == 1
    assert "none.json" in capsys.readouterr().err
