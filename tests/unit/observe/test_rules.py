"""SLO and operational rules: generated from the SLATiers, checked by the real promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from llmfleet.api.loading import parse_object
from llmfleet.observe import rules as r
from support.builders import sample

HERE = Path(__file__).parent
RULES = HERE.parents[2] / "charts" / "llmfleet" / "files" / "prometheus-rules.yaml"


def _tier(name: str, **interactive: float):
    doc = sample("SLATier", "interactive-fast")
    doc["metadata"]["name"] = name
    doc["spec"]["interactive"] = interactive
    return parse_object(doc)


def test_slos_from_tiers_pick_the_bucket_at_or_below_the_target() -> None:
    slos = r.slos_of(
        [
            _tier("a", ttftP95Seconds=1.0),
            _tier("b", ttftP95Seconds=0.3, e2eP95Seconds=45),
            parse_object(sample("SLATier", "batch")),
        ]
    )
    assert [(s.tier, s.kind, s.bucket) for s in slos] == [
        ("a", "ttft", 1.0),
        ("b", "e2e", 40.0),
        ("b", "ttft", 0.25),
    ]
    assert slos[0].budget == 0.05


def test_target_below_every_bucket_is_an_error_naming_the_field() -> None:
    with pytest.raises(r.RulesError, match=r"SLATier tiny spec.interactive.e2eP95Seconds"):
        r.slos_of([_tier("tiny", ttftP95Seconds=1.0, e2eP95Seconds=0.1)])


def test_le_matcher_accepts_both_spellings() -> None:
    assert r.le_matcher(1.0) == 'le=~"1(\\\\.0)?"'
    assert r.le_matcher(0.25) == 'le=~"0\\\\.25"'


def test_burn_alerts_are_multiwindow() -> None:
    rules = r.rules_file([_tier("a", ttftP95Seconds=1.0)])
    alerts = [
        x for g in rules["groups"] for x in g["rules"] if x.get("alert") == "LLMFleetSLOBurnRate"
    ]
    assert [(a["labels"]["long_window"], a["labels"]["short_window"]) for a in alerts] == [
        ("1h", "5m"),
        ("6h", "30m"),
    ]
    assert "> 0.72" in alerts[0]["expr"] and "> 0.3" in alerts[1]["expr"]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=60, check=False, cwd=HERE
    )


def test_promtool_check_rules() -> None:
    proc = _promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_test_rules() -> None:
    """Burn-rate alerts fire, clear and stay quiet as designed; operational alerts fire."""
    proc = _promtool("test", "rules", "rules_test.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
