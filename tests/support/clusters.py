"""A control plane of a test module's own, with the llmfleet CRDs (and any extra documents)
applied and established and one namespace created."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llmfleet.api import KINDS
from llmfleet.api.crdgen import crd_for
from llmfleet.kube.client import Cluster
from support.controlplane import LocalControlPlane


@contextmanager
def fresh_cluster(
    workdir: Path, namespace: str, extra: Iterable[dict[str, Any]] = ()
) -> Iterator[tuple[LocalControlPlane, Cluster]]:
    cp = LocalControlPlane(workdir)
    cp.start(timeout=120)
    c = Cluster.connect(cp.kubeconfig, timeout=20)
    try:
        docs = [crd_for(k) for k in KINDS] + list(extra)
        c.apply_all(docs)
        c.wait_crds_established([d["metadata"]["name"] for d in docs])
        c.ensure_namespace(namespace)
        yield cp, c
    finally:
        c.close()
        cp.stop()
