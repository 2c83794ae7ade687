"""`llmfleet operator`'s trust-boundary flags reach the planning settings with secure
defaults: kubeconfig Secrets from the operator's own namespace only, no namespace creation,
Prometheus anywhere but link-local and cloud metadata."""

from __future__ import annotations

from typing import Any

import pytest

from llmfleet.cli import main
from llmfleet.controller import operator
from llmfleet.controller.operator import OperatorConfig
from llmfleet.kube.prometheus import PrometheusAllow


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> list[OperatorConfig]:
    seen: list[OperatorConfig] = []
    monkeypatch.setattr(operator, "run", seen.append)
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    return seen


def test_defaults_are_the_secure_ones(started: list[OperatorConfig]) -> None:
    assert main(["operator"]) == 0
    planning = started[-1].planning
    assert planning.kubeconfig_secret_namespaces == ()  # cluster-wide, no POD_NAMESPACE: none
    assert planning.create_namespaces is False
    assert planning.prometheus_allow == PrometheusAllow(("*",))
    assert started[-1].metrics_address == "127.0.0.1"


def test_the_secret_namespaces_default_to_the_operators_own(
    started: list[OperatorConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["operator", "-n", "a", "-n", "b"]) == 0
    assert started[-1].planning.kubeconfig_secret_namespaces == ("a", "b")  # watched ones
    monkeypatch.setenv("POD_NAMESPACE", "llmfleet-system")
    assert main(["operator", "-n", "a"]) == 0
    assert started[-1].planning.kubeconfig_secret_namespaces == ("llmfleet-system",)


def test_the_flags_are_passed_through(started: list[OperatorConfig]) -> None:
    argv = [
        "operator", "--kubeconfig-secret-namespaces", "ops,fleet",
        "--kubeconfig-secret-namespaces", "more", "--create-namespaces",
        "--prometheus-allow", "*.monitoring.svc,10.0.0.0/8",
    ]  # fmt: skip
    assert main(argv) == 0
    planning = started[-1].planning
    assert planning.kubeconfig_secret_namespaces == ("ops", "fleet", "more")
    assert planning.create_namespaces is True
    assert planning.prometheus_allow.patterns == ("*.monitoring.svc", "10.0.0.0/8")


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--kubeconfig-secret-namespaces", "Not_A_Namespace"], "--kubeconfig-secret-namespaces"),
        (["--prometheus-allow", "10.0.0.0/33"], "--prometheus-allow '10.0.0.0/33'"),
    ],
)
def test_bad_values_are_one_line_errors(
    started: list[OperatorConfig], capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    assert main(["operator", *argv]) == 1
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and not started
