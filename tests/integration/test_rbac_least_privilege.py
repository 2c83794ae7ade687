"""The chart's RBAC on a real kube-apiserver (RBAC authorizer: the local control plane runs
``--authorization-mode=Node,RBAC``), asked with SubjectAccessReviews for the operator's
ServiceAccount as its token presents it (its user and groups):

* every (verb, group, resource, namespace) the rendered chart grants is allowed, each in the
  namespace it is granted in (cluster-wide rules over all namespaces), and they are exactly
  the chart README's default rows;
* a list of rights it must not have is denied: Secrets in kube-system, in the fleet
  namespace or anywhere but the operator's own namespace, listing or watching Secrets,
  creating or changing namespaces, workloads in kube-system or outside the fleet namespace,
  RBAC objects, escalate, bind, impersonate, pods, exec, tokens, CRDs, webhooks, Nodes.

The release puts the operator in one namespace and the fleet in another, so a grant in the
wrong place shows. The test prints the table of what it checked."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from llmfleet.kube.client import Cluster
from support.helm import by_kind, readme_rbac, readme_rbac_rows, render

RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
ALL = ""  # a cluster-wide check: every namespace (or a cluster-scoped resource)


class Release:
    def __init__(self, cluster: Cluster) -> None:
        tag = uuid.uuid4().hex[:6]
        self.op = f"sar-op-{tag}"
        self.fleet = f"sar-fleet-{tag}"
        self.other = f"sar-other-{tag}"
        self.docs = render(
            {"operator": {"watchNamespaces": [self.fleet]}},
            release=f"sar-{tag}",
            namespace=self.op,
        )
        [sa] = by_kind(self.docs, "ServiceAccount")
        self.sa = sa["metadata"]["name"]
        self.user = f"system:serviceaccount:{self.op}:{self.sa}"
        self.groups = ["system:serviceaccounts", f"system:serviceaccounts:{self.op}",
                       "system:authenticated"]  # fmt: skip
        self.objects = [d for d in self.docs if d["kind"] in RBAC_KINDS]


@pytest.fixture(scope="module")
def release(cluster: Cluster) -> Iterator[Release]:
    rel = Release(cluster)
    for ns in (rel.op, rel.fleet, rel.other):
        cluster.ensure_namespace(ns)
    cluster.apply_all(rel.objects)
    try:
        yield rel
    finally:
        for d in rel.objects:
            if d["kind"].startswith("Cluster"):
                cluster.delete("rbac.authorization.k8s.io/v1", d["kind"], d["metadata"]["name"])


def _review(cluster: Cluster, rel: Release, ns: str, group: str, resource: str, verb: str) -> bool:
    res, _, sub = resource.partition("/")
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=rel.user,
            groups=rel.groups,
            resource_attributes=client.V1ResourceAttributes(
                namespace=ns or None, group=group, resource=res, subresource=sub or None,
                verb=verb,
            ),
        )
    )  # fmt: skip
    out = client.AuthorizationV1Api(cluster.api).create_subject_access_review(
        review, _request_timeout=20
    )
    return bool(out.status.allowed)


def _grants(rel: Release) -> list[tuple[str, str, str, str]]:
    """(namespace, group, resource, verb) of every rule the chart binds to its SA."""
    out = set()
    for role in by_kind(rel.docs, "ClusterRole") + by_kind(rel.docs, "Role"):
        ns = role["metadata"].get("namespace", ALL)
        for rule in role["rules"]:
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    for v in rule["verbs"]:
                        out.add((ns, g, r, v))
    return sorted(out)


def _forbidden(rel: Release) -> list[tuple[str, str, str, str]]:
    rbac = "rbac.authorization.k8s.io"
    return [
        # Secrets: only get, only in the operator's own namespace
        ("kube-system", "", "secrets", "get"),
        ("kube-system", "", "secrets", "list"),
        (rel.fleet, "", "secrets", "get"),
        (rel.other, "", "secrets", "get"),
        (ALL, "", "secrets", "get"),
        (rel.op, "", "secrets", "list"),
        (rel.op, "", "secrets", "watch"),
        (rel.op, "", "secrets", "create"),
        # namespaces: read only (operator.createNamespaces is off)
        (ALL, "", "namespaces", "create"),
        (ALL, "", "namespaces", "patch"),
        (ALL, "", "namespaces", "update"),
        (ALL, "", "namespaces", "delete"),
        # nothing written in kube-system, nor outside the fleet namespace
        ("kube-system", "apps", "deployments", "create"),
        ("kube-system", "apps", "deployments", "patch"),
        ("kube-system", "apps", "deployments", "delete"),
        ("kube-system", "", "services", "create"),
        ("kube-system", "", "services", "delete"),
        ("kube-system", "", "configmaps", "create"),
        ("kube-system", "", "configmaps", "patch"),
        ("kube-system", "", "configmaps", "delete"),
        (ALL, "apps", "deployments", "create"),
        (rel.other, "apps", "deployments", "create"),
        (rel.other, "apps", "deployments", "delete"),
        (rel.op, "apps", "deployments", "patch"),
        (rel.other, "", "configmaps", "patch"),
        (rel.other, "gateway.networking.k8s.io", "httproutes", "create"),
        (rel.other, "gateway.envoyproxy.io", "backendtrafficpolicies", "create"),
        (rel.other, "llmfleet.dev", "fleetplans", "create"),
        (rel.other, "cluster.x-k8s.io", "machinedeployments", "patch"),
        ("kube-system", "coordination.k8s.io", "leases", "update"),
        # no RBAC, no escalation, no impersonation
        (ALL, rbac, "clusterrolebindings", "create"),
        (ALL, rbac, "clusterroles", "create"),
        (ALL, rbac, "clusterroles", "escalate"),
        (ALL, rbac, "clusterroles", "bind"),
        (rel.fleet, rbac, "rolebindings", "create"),
        (rel.fleet, rbac, "roles", "escalate"),
        (rel.fleet, rbac, "roles", "bind"),
        (ALL, "", "users", "impersonate"),
        (ALL, "", "groups", "impersonate"),
        (ALL, "", "serviceaccounts", "impersonate"),
        (ALL, "authentication.k8s.io", "userextras", "impersonate"),
        # no pods, exec or tokens
        (rel.fleet, "", "pods", "create"),
        (rel.fleet, "", "pods/exec", "create"),
        (rel.op, "", "serviceaccounts/token", "create"),
        (rel.fleet, "apps", "daemonsets", "create"),
        # the API itself and the cluster's admission
        (ALL, "apiextensions.k8s.io", "customresourcedefinitions", "create"),
        (ALL, "apiextensions.k8s.io", "customresourcedefinitions", "delete"),
        (ALL, "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "create"),
        (ALL, "llmfleet.dev", "regions", "delete"),
        (rel.fleet, "llmfleet.dev", "tenantquotas", "create"),
        (ALL, "llmfleet.dev", "fleetplans", "create"),
        # node pools: no Node writes (static pools are off), no deleting anyone's pools
        (ALL, "", "nodes", "create"),
        (ALL, "", "nodes", "delete"),
        (ALL, "karpenter.sh", "nodepools", "delete"),
        (rel.fleet, "cluster.x-k8s.io", "machinedeployments", "delete"),
    ]


def test_the_service_account_has_exactly_the_charts_rights(
    cluster: Cluster, release: Release, capsys: pytest.CaptureFixture[str]
) -> None:
    rel = release
    grants = _grants(rel)
    # the chart's grants are the README's rows of this release (namespaces aside): the
    # default ones and the namespaced operator's peering
    documented = {
        (g, r, v)
        for g, r, v, _, when in readme_rbac_rows()
        if when == "operator.peering.enabled with operator.watchNamespaces"
    }
    assert {(g, r, v) for _, g, r, v in grants} == readme_rbac() | documented
    forbidden = _forbidden(rel)
    assert not set(forbidden) & set(grants)
    rows: list[tuple[str, str, str, str, str, bool]] = []
    wrong = []
    for expect, checks in ((True, grants), (False, forbidden)):
        for ns, group, resource, verb in checks:
            got = _review(cluster, rel, ns, group, resource, verb)
            rows.append(
                (
                    verb,
                    group or "(core)",
                    resource,
                    _where(rel, ns),
                    "allow" if expect else "deny",
                    got,
                )
            )
            if got != expect:
                wrong.append((ns, group, resource, verb, "allowed" if got else "denied"))
    with capsys.disabled():
        print(_table(rel, rows))
    assert not wrong, wrong
    assert len(grants) > 60 and len(forbidden) > 40


def test_the_checks_have_teeth(cluster: Cluster, release: Release) -> None:
    """The authorizer really evaluates RBAC: the same reviews for a ServiceAccount without
    bindings are denied, and a right the chart gives only with a value is denied without it."""
    rel = release
    stranger = Release.__new__(Release)
    stranger.user = f"system:serviceaccount:{rel.op}:nobody"
    stranger.groups = rel.groups
    assert not _review(cluster, stranger, rel.fleet, "apps", "deployments", "create")
    assert not _review(cluster, stranger, ALL, "llmfleet.dev", "regions", "get")
    assert _review(cluster, rel, rel.fleet, "apps", "deployments", "create")
    assert not _review(cluster, rel, ALL, "", "nodes/status", "patch")  # rbac.nodePools.static


def _where(rel: Release, ns: str) -> str:
    names = {ALL: "cluster-wide", rel.op: "operator ns", rel.fleet: "fleet ns",
             rel.other: "other ns"}  # fmt: skip
    return names.get(ns, ns)


def _table(rel: Release, rows: list[Any]) -> str:
    head = ("verb", "group", "resource", "where", "expected", "apiserver")
    body = [(v, g, r, w, e, "allowed" if got else "denied") for v, g, r, w, e, got in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [
        f"\nSubjectAccessReviews for {rel.user} (operator ns {rel.op}, fleet ns {rel.fleet}, "
        f"other ns {rel.other}): {len(rows)} checks",
        line.format(*head),
        line.format(*("-" * w for w in widths)),
    ]
    out += [line.format(*row) for row in body]
    return "\n".join(out)
