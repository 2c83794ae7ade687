"""The harness's pure parts: which pods get an emulator, which Services a listener, file_sd."""

from __future__ import annotations

from typing import Any

from llmfleet.box.harness import desired_replicas, file_sd, selects, service_routes
from llmfleet.kube.render import LABEL_GPU_TYPE, LABEL_MODEL, LABEL_REGION


def _model(name: str = "m", namespace: str = "ns", gpu_types: tuple[str, ...] = ("G",)) -> Any:
    return {
        "apiVersion": "llmfleet.dev/v1alpha1",
        "kind": "LLMModel",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "7"},
        "spec": {
            "servedModelName": name,
            "profiles": [
                {
                    "gpuType": g,
                    "gpusPerReplica": 1,
                    "prefillTokensPerSecond": 1000,
                    "decodeTokensPerSecond": 100,
                    "maxConcurrentSequences": 4,
                    "loadSeconds": 30,
                }
                for g in gpu_types
            ],
        },
        "status": {"replicas": 1},
    }


def _pod(name: str, phase: str = "Running", node: str = "n1", **extra: Any) -> Any:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "labels": {LABEL_MODEL: "m", LABEL_REGION: "r1", "model_name": "m", "region": "r1"},
            **extra,
        },
        "spec": {"nodeName": node},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]},
    }


NODES = {"n1": {"metadata": {"name": "n1", "labels": {LABEL_GPU_TYPE: "H"}}}}


def test_running_pods_get_the_profile_of_their_node_gpu_type() -> None:
    pods = [
        _pod("a"),
        _pod("b", phase="Pending"),
        _pod("c", deletionTimestamp="2026-01-01T00:00:00Z"),
    ]
    out, problems = desired_replicas(pods, [_model(gpu_types=("G", "H"))], NODES)
    assert problems == []
    assert list(out) == ["uid-a"]
    spec = out["uid-a"]
    assert (spec.model, spec.gpu_type, spec.ready) == ("m", "H", True)
    assert "status" not in spec.manifest and "resourceVersion" not in spec.manifest


def test_a_pod_without_model_or_profile_is_a_problem_not_an_emulator() -> None:
    out, problems = desired_replicas([_pod("a")], [], NODES)
    assert out == {} and problems == ["pod ns/a: no LLMModel named 'm'"]
    out, problems = desired_replicas([_pod("a")], [_model(gpu_types=("G", "X"))], NODES)
    assert out == {} and "GPU type H is not one of LLMModel m's profiles" in problems[0]
    # a node without the GPU type label: the model's only profile
    out, problems = desired_replicas([_pod("a", node="other")], [_model()], NODES)
    assert problems == [] and out["uid-a"].gpu_type == "G"


def test_the_llmmodel_of_the_pods_namespace_wins() -> None:
    models = [_model(namespace="aaa", gpu_types=("X",)), _model(namespace="ns", gpu_types=("H",))]
    out, _ = desired_replicas([_pod("a")], models, NODES)
    assert out["uid-a"].model_namespace == "ns"


def test_services_with_cluster_ip_selector_and_tcp_ports() -> None:
    svcs = [
        {
            "metadata": {"name": "s", "namespace": "ns"},
            "spec": {"clusterIP": "127.0.100.7", "selector": {LABEL_MODEL: "m"},
                     "ports": [{"port": 8000, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]},
        },
        {"metadata": {"name": "headless"}, "spec": {"clusterIP": "None", "selector": {"a": "b"},
                                                     "ports": [{"port": 1}]}},
        {"metadata": {"name": "nosel"}, "spec": {"clusterIP": "127.0.100.8", "ports": [{"port": 1}]}},
    ]  # fmt: skip
    routes = service_routes(svcs)
    assert [(r.name, r.cluster_ip, r.ports) for r in routes] == [("s", "127.0.100.7", (8000,))]
    assert selects(routes[0].selector, {LABEL_MODEL: "m", "x": "y"}.items())
    assert not selects(routes[0].selector, {LABEL_MODEL: "other"}.items())


def test_file_sd_carries_the_pod_monitor_target_labels() -> None:
    out, _ = desired_replicas([_pod("a")], [_model(gpu_types=("H",))], NODES)
    assert file_sd([(out["uid-a"], 4321)]) == [
        {
            "targets": ["127.0.0.1:4321"],
            "labels": {"model_name": "m", "region": "r1", "namespace": "ns", "pod": "a"},
        }
    ]
