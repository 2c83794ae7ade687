"""``llmfleet router calibrate --apply`` against a real kube-apiserver: the fleet is read
from the namespace, the calibrated router lands in the ConfigMap ``llmfleet-router``, and
what the router service and the planner read from it parses; the operator's own apply of
``router.json`` keeps the artefact and the shares (another field manager)."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import yaml

from llmfleet.api.loading import load_manifests
from llmfleet.cli import main
from llmfleet.gateway.config import load_config
from llmfleet.kube.actuate_cmd import read_snapshot
from llmfleet.kube.client import Cluster
from llmfleet.kube.router_config import (
    ROUTER_CONFIG_KEY,
    ROUTER_CONFIG_MAP,
    SHARES_KEY,
    render_router_config_map,
    router_config_document,
    shares_from_config_map,
    stored_calibrations,
)
from llmfleet.routing.models.serving import FastHashing
from support.controlplane import LocalControlPlane
from unit.routing.test_model_router import synthetic

ROOT = Path(__file__).resolve().parents[2]
TIER = "interactive-normal"
SMALL, LARGE = "llama-3-1-8b", "llama-3-3-70b"


def _csv(path: Path) -> Path:
    data = synthetic(600, seed=4)  # models "small" (cost 1) and "large" (cost 20)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["prompt", "quality:org/small", "cost:org/small", "quality:org/large", "cost:org/large"]
        )
        for i, p in enumerate(data.prompts):
            w.writerow(
                [p, *[f"{v:g}" for j in range(2) for v in (data.quality[i, j], data.cost[i, j])]]
            )
    return path


def _mount(cm: dict, folder: Path) -> Path:
    """The ConfigMap's keys as its volume mounts them; the ConfigMap manifest beside."""
    folder.mkdir()
    for key, text in (cm.get("data") or {}).items():
        (folder / key).write_text(text)
    for key, b64 in (cm.get("binaryData") or {}).items():
        (folder / key).write_bytes(base64.b64decode(b64))
    manifest = {k: cm[k] for k in ("apiVersion", "kind", "metadata", "data")}
    (folder / "configmap.yaml").write_text(yaml.safe_dump(manifest))
    return folder


def test_calibrate_apply_writes_a_configmap_the_router_and_the_planner_read(
    controlplane: LocalControlPlane, cluster: Cluster, namespace: str, tmp_path: Path, capsys
):
    objs = load_manifests([ROOT / "crds" / "samples"], namespace=namespace)
    cluster.apply_all(o.to_wire() for o in objs)
    argv = ["router", "calibrate", "--data", str(_csv(tmp_path / "d.csv")), "--tier", TIER,
            "--kubeconfig", str(controlplane.kubeconfig), "-n", namespace, "--bits", "10",
            "--folds", "3", "--column", f"{SMALL}=org/small", "--column", f"{LARGE}=org/large",
            "--apply"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert f"applied ConfigMap {namespace}/{ROUTER_CONFIG_MAP}" in printed

    cm = cluster.get("v1", "ConfigMap", ROUTER_CONFIG_MAP, namespace)
    assert cm is not None
    doc = json.loads(cm["data"][ROUTER_CONFIG_KEY])
    tier = doc["tiers"][TIER]
    assert tier["lambda"] is not None and tier["calibration"]["threshold"] == "calibrated"
    assert f"lambda {tier['lambda']:.6g}" in printed
    assert tier["artefact"] == f"{TIER}.npz" and tier["bits"] == 10
    npz = base64.b64decode(cm["binaryData"][f"{TIER}.npz"])
    assert npz[:2] == b"PK" and f"{len(npz):,} bytes" in printed
    shares = shares_from_config_map(cm)
    assert shares is not None and shares.get(TIER) is not None
    assert shares.get(TIER).reference == LARGE  # type: ignore[union-attr]
    assert 0 < shares.get(TIER).share(SMALL) < 1  # type: ignore[union-attr]

    # `llmfleet router serve --config` reads the mounted router.json (the artefact beside it),
    # or the ConfigMap manifest
    folder = _mount(cm, tmp_path / "mounted")
    for config_file in (folder / ROUTER_CONFIG_KEY, folder / "configmap.yaml"):
        router = load_config(config_file).tiers[TIER]
        assert router.lam == tier["lambda"] and router.members
        picks = {router.decide(p, FastHashing(10)).candidate.model
                 for p in synthetic(200, seed=9).prompts}  # fmt: skip
        assert picks == {SMALL, LARGE}

    # the operator's actuation applies router.json alone (its field manager, its rendering
    # from the stored calibrations): the artefact and shares.json stay
    snap, _ = read_snapshot(cluster, namespace)
    again = router_config_document(snap.tiers, snap.models, snap.tenants, stored_calibrations(cm))
    cluster.apply(render_router_config_map(again, ROUTER_CONFIG_MAP, namespace))
    after = cluster.get("v1", "ConfigMap", ROUTER_CONFIG_MAP, namespace)
    assert after is not None
    assert set(after["data"]) == {ROUTER_CONFIG_KEY, SHARES_KEY}
    assert after["binaryData"] == cm["binaryData"]
    assert json.loads(after["data"][ROUTER_CONFIG_KEY])["tiers"][TIER]["lambda"] == tier["lambda"]
    assert load_config(_mount(after, tmp_path / "after") / ROUTER_CONFIG_KEY).tiers[TIER].members
