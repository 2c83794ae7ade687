"""The local control plane (hack/controlplane) is a working Kubernetes.

Checks the things the operator's integration tests rely on: the real
release version, kube-controller-manager reconciling Deployments, owner
reference garbage collection, namespace deletion, and several independent
instances side by side (multi-region tests run three).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    from support.controlplane import ControlPlaneError, LocalControlPlane, ensure_binary
except ImportError:  # without tests/conftest.py putting tests/ on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from support.controlplane import ControlPlaneError, LocalControlPlane, ensure_binary

k8s = pytest.importorskip("kubernetes")
from kubernetes import client as k8s_client  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

pytestmark = pytest.mark.integration

WAIT = 30.0


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except ApiException as e:
            result, last = None, e
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last})")


def api_client(cp: LocalControlPlane) -> k8s_client.ApiClient:
    return k8s.config.new_client_from_config(config_file=str(cp.kubeconfig))


@pytest.fixture(scope="module")
def binary() -> Path:
    try:
        return ensure_binary()
    except ControlPlaneError as e:
        pytest.skip(f"local control plane unavailable: {e}")


# Own instance (module scope) rather than the session-wide `controlplane` from
# conftest.py: these tests check the control plane itself, and starting a second
# and third instance next to the session one is part of what they prove.
@pytest.fixture(scope="module")
def own_cp(binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(tmp_path_factory.mktemp("cp-a")) as cp:
        yield cp


@pytest.fixture(scope="module")
def own_api(own_cp: LocalControlPlane) -> Iterator[k8s_client.ApiClient]:
    c = api_client(own_cp)
    yield c
    c.close()


@pytest.fixture
def own_ns(own_api: k8s_client.ApiClient) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    k8s_client.CoreV1Api(own_api).create_namespace(
        k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name))
    )
    return name


def test_version_is_real_release(own_api: k8s_client.ApiClient, own_cp: LocalControlPlane) -> None:
    info = k8s_client.VersionApi(own_api).get_code()
    assert info.git_version.startswith("v1.34."), info
    assert info.major == "1"
    assert info.minor.startswith("34")
    assert own_cp.server.startswith("https://127.0.0.1:")
    assert own_cp.kubeconfig.is_file()


def _deployment(name: str) -> k8s_client.V1Deployment:
    labels = {"app": name}
    return k8s_client.V1Deployment(
        metadata=k8s_client.V1ObjectMeta(name=name, labels=labels),
        spec=k8s_client.V1DeploymentSpec(
            replicas=1,
            selector=k8s_client.V1LabelSelector(match_labels=labels),
            template=k8s_client.V1PodTemplateSpec(
                metadata=k8s_client.V1ObjectMeta(labels=labels),
                spec=k8s_client.V1PodSpec(
                    containers=[
                        k8s_client.V1Container(name="c", image="registry.k8s.io/pause:3.10")
                    ]
                ),
            ),
        ),
    )


def test_deployment_gets_replicaset_and_gc_removes_it(
    own_api: k8s_client.ApiClient, own_ns: str
) -> None:
    apps = k8s_client.AppsV1Api(own_api)
    dep = apps.create_namespaced_deployment(own_ns, _deployment("web"))

    def owned_replicasets() -> list[Any]:
        rss = apps.list_namespaced_replica_set(own_ns).items
        return [
            rs
            for rs in rss
            if any(ref.uid == dep.metadata.uid for ref in (rs.metadata.owner_references or []))
        ]

    rss = wait_for("a ReplicaSet owned by the Deployment", owned_replicasets)
    assert rss[0].spec.replicas == 1

    # The ReplicaSet controller creates the pod (it stays Pending: no scheduler/kubelet).
    core = k8s_client.CoreV1Api(own_api)
    wait_for("the ReplicaSet's pod", lambda: core.list_namespaced_pod(own_ns).items)

    apps.delete_namespaced_deployment(
        "web", own_ns, body=k8s_client.V1DeleteOptions(propagation_policy="Background")
    )
    wait_for(
        "garbage collection of the ReplicaSet",
        lambda: not apps.list_namespaced_replica_set(own_ns).items,
    )
    wait_for("garbage collection of the pod", lambda: not core.list_namespaced_pod(own_ns).items)


def test_namespace_deletion_completes(own_api: k8s_client.ApiClient, own_ns: str) -> None:
    core = k8s_client.CoreV1Api(own_api)
    core.create_namespaced_config_map(
        own_ns,
        k8s_client.V1ConfigMap(metadata=k8s_client.V1ObjectMeta(name="cm"), data={"k": "v"}),
    )
    k8s_client.AppsV1Api(own_api).create_namespaced_deployment(own_ns, _deployment("doomed"))
    core.delete_namespace(own_ns)

    def gone() -> bool:
        try:
            core.read_namespace(own_ns)
        except ApiException as e:
            if e.status == 404:
                return True
            raise
        return False

    wait_for(f"namespace {own_ns} to be deleted", gone)


def test_default_serviceaccount_exists(own_api: k8s_client.ApiClient) -> None:
    # The supervisor only reports ready once this exists, so pods can be created at once.
    sa = k8s_client.CoreV1Api(own_api).read_namespaced_service_account("default", "default")
    assert sa.metadata.name == "default"


def test_two_instances_side_by_side(
    own_cp: LocalControlPlane,
    own_api: k8s_client.ApiClient,
    binary: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with LocalControlPlane(tmp_path_factory.mktemp("cp-b")) as other:
        assert other.port != own_cp.port
        assert other.server != own_cp.server
        other_api = api_client(other)
        try:
            assert k8s_client.VersionApi(other_api).get_code().git_version.startswith("v1.34.")
            name = f"only-b-{uuid.uuid4().hex[:6]}"
            k8s_client.CoreV1Api(other_api).create_namespace(
                k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name))
            )
            with pytest.raises(ApiException) as exc:
                k8s_client.CoreV1Api(own_api).read_namespace(name)
            assert exc.value.status == 404
        finally:
            other_api.close()
    assert not other.running()
    # The first instance is unaffected by the second one stopping.
    assert k8s_client.VersionApi(own_api).get_code().git_version.startswith("v1.34.")
