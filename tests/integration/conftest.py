"""Integration tier: a real kube-apiserver + etcd + controller-manager, built from
hack/controlplane, started once per session; the llmfleet operator as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmfleet.api import KINDS
from llmfleet.api.crdgen import crd_for
from llmfleet.kube.client import Cluster
from support.controlplane import LocalControlPlane

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def controlplane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    cp = LocalControlPlane(tmp_path_factory.mktemp("hub"))
    cp.start(timeout=120)
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def cluster(controlplane: LocalControlPlane) -> Iterator[Cluster]:
    c = Cluster.connect(controlplane.kubeconfig, timeout=20)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> list[dict[str, Any]]:
    docs = [crd_for(k) for k in KINDS]
    cluster.apply_all(docs)
    cluster.wait_crds_established([d["metadata"]["name"] for d in docs])
    return docs


@pytest.fixture
def namespace(cluster: Cluster, crds: list[dict[str, Any]]) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.ensure_namespace(name)
    return name


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 30,
    interval: float = 0.25,
    what: str = "condition",
) -> Any:
    """Poll until ``predicate`` returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


class OperatorProcess:
    """``llmfleet operator`` as a child process with its log captured."""

    def __init__(self, kubeconfig: Path, log: Path, *args: str) -> None:
        self.log = log
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
        self._fh = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmfleet.cli", "operator", "--recheck-seconds", "1", *args],
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._fh.close()


@pytest.fixture(scope="session")
def operator(
    controlplane: LocalControlPlane,
    crds: list[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    # validation only: the planning loop has its own operator in test_planning_loop.py
    op = OperatorProcess(
        controlplane.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log",
        "--no-planning",
    )
    try:
        yield op
    finally:
        op.stop()
