"""The cluster client's failure behaviour: conflicts and throttling are retried with backoff,
other answers are not, and a dead apiserver is :class:`ClusterUnreachable` (a value the
actuator can sort), never a raw urllib3 exception."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from llmfleet.kube.client import Cluster, ClusterUnreachable, KubeError, RetryPolicy


class _Answer:
    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj

    def to_dict(self) -> dict[str, Any]:
        return self.obj


def _api_error(status: int, reason: str, headers: dict[str, str] | None = None) -> ApiException:
    err = ApiException(status=status, reason=reason)
    err.body = json.dumps({"reason": reason, "message": f"{reason}: the object has been modified"})
    err.headers = headers or {}
    return err


class _Resource:
    """A dynamic-client resource whose writes fail with ``errors`` first, then succeed."""

    namespaced = True

    def __init__(self, errors: list[ApiException]) -> None:
        self.errors = list(errors)
        self.calls = 0

    def _next(self, **kwargs: Any) -> _Answer:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return _Answer({"metadata": {"name": kwargs.get("name")}})

    server_side_apply = _next
    create = _next
    delete = _next


class _Dynamic:
    def __init__(self, res: _Resource) -> None:
        self.resources = self
        self.res = res

    def get(self, **_: Any) -> _Resource:
        return self.res


def _cluster(res: _Resource, waits: list[float], policy: RetryPolicy | None = None) -> Cluster:
    cfg = client.Configuration()
    cfg.host = "https://127.0.0.1:1"
    c = Cluster(api=client.ApiClient(cfg), timeout=2, name="test", sleep=waits.append,
                **({"retry": policy} if policy else {}))  # fmt: skip
    c._dynamic = _Dynamic(res)  # type: ignore[attr-defined]
    return c


CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "ns"}}


def test_a_write_conflict_is_retried_with_backoff_until_it_succeeds():
    res = _Resource([_api_error(409, "Conflict"), _api_error(409, "Conflict")])
    waits: list[float] = []
    out = _cluster(res, waits).apply(CM)
    assert out["metadata"]["name"] == "x"
    assert res.calls == 3
    assert waits == [0.1, 0.2]  # exponential


def test_throttling_honours_retry_after_within_the_cap():
    res = _Resource([_api_error(429, "TooManyRequests", {"Retry-After": "1"})])
    waits: list[float] = []
    _cluster(res, waits).apply(CM)
    assert waits == [1.0]


def test_a_conflict_that_persists_is_an_error_naming_the_attempts():
    policy = RetryPolicy(attempts=3, base_seconds=0.5, max_seconds=0.75)
    res = _Resource([_api_error(409, "Conflict")] * 5)
    waits: list[float] = []
    with pytest.raises(KubeError, match=r"apply ConfigMap x: .*modified \(after 3 attempts\)") as e:
        _cluster(res, waits, policy).apply(CM)
    assert e.value.status == 409 and res.calls == 3
    assert waits == [0.5, 0.75]


def test_already_exists_and_invalid_are_not_retried():
    for err in (_api_error(409, "AlreadyExists"), _api_error(422, "Invalid")):
        res = _Resource([err])
        waits: list[float] = []
        with pytest.raises(KubeError) as e:
            _cluster(res, waits).create(CM)
        assert e.value.status == err.status and res.calls == 1 and waits == []
        assert not isinstance(e.value, ClusterUnreachable)


def test_delete_of_a_missing_object_is_false_not_an_error():
    res = _Resource([_api_error(404, "NotFound")])
    assert _cluster(res, []).delete("v1", "ConfigMap", "x", "ns") is False


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dead_kubeconfig(port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}",
                                               "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }  # fmt: skip


def test_a_dead_apiserver_is_cluster_unreachable():
    port = _closed_port()
    c = Cluster.from_kubeconfig_dict(
        _dead_kubeconfig(port), name="region eu-west", timeout=2, show_server=True
    )
    try:
        with pytest.raises(
            ClusterUnreachable, match=rf"region eu-west: .*127.0.0.1:{port} unreachable"
        ):
            c.list("v1", "Node")
    finally:
        c.close()


def test_a_cluster_from_a_secret_never_names_its_server():
    """The URL of a kubeconfig held in a Secret is the Secret's content: the messages (which
    reach statuses and Events) say where the cluster came from, never where it is."""
    port = _closed_port()
    c = Cluster.from_kubeconfig_dict(
        _dead_kubeconfig(port), name="Region eu-west (the cluster in Secret fleet/kc)", timeout=2
    )
    try:
        with pytest.raises(ClusterUnreachable) as e:
            c.list("v1", "Node")
    finally:
        c.close()
    msg = str(e.value)
    assert msg.startswith("Region eu-west (the cluster in Secret fleet/kc): ")
    assert "its apiserver unreachable" in msg, msg
    assert "127.0.0.1" not in msg and str(port) not in msg, msg


def test_a_kubeconfig_that_is_not_one_is_refused_without_quoting_it():
    doc = _dead_kubeconfig(1)
    doc["current-context"] = "s3cr3t-context"
    with pytest.raises(ValueError, match="current-context") as e:
        Cluster.from_kubeconfig_dict(doc, name="x")
    assert "s3cr3t" not in str(e.value) and "current-context" in str(e.value)


class _Namespaces:
    """The Namespace resource: ``existing`` names, and the writes it was asked for."""

    namespaced = False

    def __init__(self, existing: set[str]) -> None:
        self.existing = existing
        self.applied: list[str] = []

    def get(self, name: str, **_: Any) -> _Answer:
        if name not in self.existing:
            err = ApiException(status=404, reason="NotFound")
            err.body = json.dumps(
                {"reason": "NotFound", "message": f'namespaces "{name}" not found'}
            )
            raise err
        return _Answer({"metadata": {"name": name}})

    def server_side_apply(self, name: str, **_: Any) -> _Answer:
        self.applied.append(name)
        self.existing.add(name)
        return _Answer({"metadata": {"name": name}})


def _ns_cluster(res: _Namespaces, create: bool) -> Cluster:
    c = _cluster(_Resource([]), [])
    c.create_namespaces = create
    c._dynamic = _Dynamic(res)  # type: ignore[arg-type,attr-defined]
    return c


def test_ensure_namespace_writes_nothing_when_it_exists():
    res = _Namespaces({"fleet"})
    for create in (True, False):
        _ns_cluster(res, create).ensure_namespace("fleet")
    assert res.applied == []  # no write: no right to patch namespaces needed


def test_a_missing_namespace_is_created_only_when_allowed_else_an_error_naming_it():
    res = _Namespaces(set())
    with pytest.raises(KubeError) as e:
        _ns_cluster(res, create=False).ensure_namespace("fleet")
    assert "namespace 'fleet' does not exist" in str(e.value)
    assert "--create-namespaces" in str(e.value) and "operator.createNamespaces" in str(e.value)
    assert res.applied == []
    _ns_cluster(res, create=True).ensure_namespace("fleet")
    assert res.applied == ["fleet"]


def test_a_view_with_namespace_creation_shares_the_client():
    c = _cluster(_Resource([]), [])
    assert c.with_namespace_creation(True) is c
    view = c.with_namespace_creation(False)
    assert view is not c and view.create_namespaces is False and c.create_namespaces is True
    assert view.api is c.api and view._dynamic is c._dynamic  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("users", "tokenFile", "/var/run/secrets/kubernetes.io/serviceaccount/token"),
        ("users", "exec", {"apiVersion": "client.authentication.k8s.io/v1", "command": "sh"}),
        ("users", "auth-provider", {"name": "oidc"}),
        ("users", "client-key", "/etc/passwd"),
        (
            "clusters",
            "certificate-authority",
            "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
        ),
    ],
)
def test_a_kubeconfig_from_a_secret_may_not_run_commands_or_read_files(
    section: str, key: str, value: Any
) -> None:
    """Whoever writes the Secret must not make the operator run a command, or send its own
    ServiceAccount token (a file of its pod) to the server the kubeconfig names."""
    doc = _dead_kubeconfig(1)
    doc[section][0][section[:-1]][key] = value
    with pytest.raises(ValueError, match=rf"{section}\[0\]\.{section[:-1]}\.{key}: ") as e:
        Cluster.from_kubeconfig_dict(doc, name="x")
    assert "inline" in str(e.value) and "/var/run" not in str(e.value)
