"""Every user error of `llmfleet` is one line naming the file or flag and what is wrong; a
traceback only with `--debug`."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmfleet.cli import main


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def no_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if `llmfleet simulate` gets as far as loading a scenario or traces."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("loaded something before rejecting the arguments")

    monkeypatch.setattr("llmfleet.sim.scenario.load_scenario", boom)
    monkeypatch.setattr("llmfleet.sim.workload.stream_workload", boom)


def _scenario(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet-scenario.yaml"
    path.write_text(text)
    return path


def test_an_invalid_scenario_file_is_one_line_naming_file_and_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _scenario(tmp_path, "workload: {clients: []}\nfleet: []\n")
    assert main(["simulate", str(path)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"llmfleet simulate: error: {path}: ")
    assert "workload.clients: List should have at least 1 item" in line
    assert "fleet: List should have at least 1 item" in line


def test_a_scenario_whose_clients_name_no_tenant_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from importlib import resources

    import yaml

    text = resources.files("llmfleet.sim").joinpath("scenarios/default.yaml").read_text()
    doc = yaml.safe_load(text)
    doc["workload"]["clients"][0]["tenant"] = "nobody"
    path = _scenario(tmp_path, yaml.safe_dump(doc))
    assert main(["simulate", str(path)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert f"{path}: workload.clients[0].tenant 'nobody': no TenantQuota" in line


def test_a_scenario_that_is_not_yaml_or_not_there_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _scenario(tmp_path, "workload: [\n")
    assert main(["simulate", str(path)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert f"{path}: not valid YAML" in line and "line 2, column 1" in line
    missing = tmp_path / "nope.yaml"
    assert main(["simulate", str(missing)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert f"{missing}: no such scenario file" in line


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    from llmfleet.sim.scenario import ScenarioError

    path = _scenario(tmp_path, "workload: {clients: []}\nfleet: []\n")
    with pytest.raises(ScenarioError):
        main(["--debug", "simulate", str(path)])
    with pytest.raises(ScenarioError):
        main(["simulate", str(path), "--debug"])


@pytest.mark.usefixtures("no_replay")
def test_unknown_policies_are_rejected_before_loading_anything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["simulate", "--policies", "reactive,bogus"])
    assert done.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert "argument --policies: unknown policy 'bogus'" in line
    assert "known: llmfleet, reactive, siloed, sageserve, static-peak, oracle" in line


@pytest.mark.usefixtures("no_replay")
def test_unknown_scheduler_is_rejected_before_loading_anything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["simulate", "--scheduler", "lottery"])
    assert done.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert "argument --scheduler: unknown scheduler 'lottery'; known: fcfs, rpm, vtc" in line


@pytest.mark.usefixtures("no_replay")
@pytest.mark.parametrize("days", ["0", "-1", "15", "nan", "three"])
def test_days_outside_the_traces_are_rejected(days: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["simulate", "--days", days, "--traces", "/nonexistent"])
    assert done.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert "argument --days:" in line and "> 0 and <= 14" in line


def test_explain_rejects_a_negative_load(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["explain", "--load", "-1"])
    assert done.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert "argument --load: must be a share >= 0" in line


@pytest.mark.parametrize(
    ("flag", "value", "known"),
    [
        ("--model", "nope", "known: llama-3-1-405b, llama-3-1-8b, llama-3-3-70b"),
        ("--region", "mars", "known: ap-northeast, eu-west, us-east"),
        ("--policy", "other", "known: default"),
    ],
)
def test_explain_names_the_known_objects_for_an_unknown_one(
    flag: str, value: str, known: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", flag, value]) == 1
    line = _one_line(capsys.readouterr().err)
    assert f"{flag} {value!r}: " in line and known in line


def test_manifest_files_that_are_missing_or_not_yaml_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.yaml"
    for cmd in (["validate", str(missing)], ["explain", str(missing)],
                ["dashboards", "--check", "--tiers", str(missing)]):  # fmt: skip
        assert main(cmd) == 1
        line = _one_line(capsys.readouterr().err)
        assert f"{missing}: No such file or directory" in line
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [\n")
    for cmd in (["validate", str(bad)], ["explain", str(bad)], ["dashboards", "--tiers", str(bad)]):
        assert main(cmd) == 1
        line = _one_line(capsys.readouterr().err)
        assert f"{bad}: not valid YAML" in line and "line 2, column 1" in line


@pytest.mark.parametrize("command", [["install"], ["get"], ["actuate", "plan-1"]])
def test_a_missing_kubeconfig_is_one_line(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "kubeconfig"
    assert main([*command, "--kubeconfig", str(missing)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert f"--kubeconfig {missing}: no such file" in line


def test_a_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["get", "--namespace"])
    assert done.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("llmfleet get: error: argument -n/--namespace: expected one argument")
