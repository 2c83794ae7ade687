"""`llmfleet explain` plans the sample fleet and says why replicas exist."""

from __future__ import annotations

from llmfleet.cli import main


def test_explain_names_the_binding_reasons(capsys):
    assert main(["explain", "--model", "llama-3-3-70b"]) == 0
    out = capsys.readouterr().out
    assert "llama-3-3-70b @ us-east" in out
    assert "min-replicas" in out
    assert "USD/h at step 0" in out
    assert "llama-3-1-8b @" not in out


def test_explain_reports_bad_manifests(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: llmfleet.dev/v1alpha1\nkind: Region\nmetadata: {name: x}\nspec: {location: y, pools: []}\n"
    )
    assert main(["explain", str(bad)]) == 1
    assert "pools" in capsys.readouterr().err
