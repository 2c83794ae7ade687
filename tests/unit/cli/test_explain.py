"""`llmfleet explain` plans the sample fleet and says why replicas exist."""

from __future__ import annotations

import re

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
