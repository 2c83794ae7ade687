"""The chart with the real helm: lint, render, schema, secure defaults, RBAC documented."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmfleet.api.crdgen import crd_for
from llmfleet.api.kinds import KINDS
from support.helm import CHART, KUBE_VERSION, by_kind, helm, readme_rbac_rows, render


def test_helm_lint_is_clean_with_every_option() -> None:
    out = helm("lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION).stdout
    assert "0 chart(s) failed" in out
    helm(
        "lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION,
        "--set", "serviceMonitor.enabled=true,prometheusRule.enabled=true",
        "--set", "operator.watchNamespaces={a,b}",
    )  # fmt: skip


def test_plain_helm_template_renders() -> None:
    """No --kube-version: offline, helm assumes its compiled-in Kubernetes (v1.20.0 for
    hack/bin/helm, built without the release ldflags), which is no cluster's version."""
    docs = [d for d in yaml.safe_load_all(helm("template", str(CHART)).stdout) if d]
    [dep] = by_kind(docs, "Deployment")
    assert dep["metadata"]["name"] == "release-name-llmfleet"
    assert "0 chart(s) failed" in helm("lint", str(CHART), "--strict").stdout


def _probe_chart(tmp_path: Path) -> Path:
    """A chart whose one template runs the llmfleet chart's version check on .Values.version
    (what templates/checks.yaml runs on the cluster's version when helm talks to one)."""
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.0.1\n")
    shutil.copy(CHART / "templates" / "_helpers.tpl", chart / "templates")
    (chart / "templates" / "probe.yaml").write_text(
        '{{ include "llmfleet.checkKubeVersion" .Values.version }}'
    )
    return chart


@pytest.mark.parametrize(
    ("version", "ok"),
    [("v1.27.3", False), ("v1.28.15+k3s1", False), ("v1.29.0", True), ("v1.34.4-eks-1", True)],
)
def test_kube_version_is_enforced_on_a_cluster(tmp_path: Path, version: str, ok: bool) -> None:
    proc = helm("template", str(_probe_chart(tmp_path)), "--set", f"version={version}", check=False)
    if ok:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode != 0
        assert (
            f"llmfleet needs Kubernetes >= 1.29.0 (kubeVersion: its CRDs use CEL validation "
            f"rules); the cluster runs {version}"
        ) in proc.stderr


def test_default_render() -> None:
    docs = render(include_crds=True)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds.count("CustomResourceDefinition") == len(KINDS) + 2  # + kopf peering
    assert {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service"} <= set(
        kinds
    )
    assert "ServiceMonitor" not in kinds and "PrometheusRule" not in kinds
    assert kinds.count("ConfigMap") == 4
    [dep] = by_kind(docs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert c["image"] == "ghcr.io/llmfleet/llmfleet:0.1.0"
    assert "--peering=llmfleet" in c["args"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in c["args"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    [peering] = by_kind(docs, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "llmfleet"


def test_secure_defaults() -> None:
    [dep] = by_kind(render(), "Deployment")
    pod = dep["spec"]["template"]["spec"]
    sc = pod["containers"][0]["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod["containers"][0]["resources"]["limits"]["memory"]


def test_scheduling_and_extras_are_passed_through() -> None:
    values = {
        "nodeSelector": {"pool": "system"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "priorityClassName": "system-cluster-critical",
        "operator": {
            "extraArgs": ["--verbose"],
            "extraEnv": [{"name": "X", "value": "1"}],
            "watchNamespaces": ["a", "b"],
        },
        "image": {"tag": "dev"},
    }
    docs = render(values)
    [dep] = by_kind(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["nodeSelector"] == {"pool": "system"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert pod["affinity"] == {"nodeAffinity": {}}
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert c["args"][-3:] == ["--namespace=a", "--namespace=b", "--verbose"]
    assert {"name": "X", "value": "1"} in c["env"]
    assert c["image"].endswith(":dev")
    # a namespaced operator peers in each namespace it watches
    assert [p["metadata"]["namespace"] for p in by_kind(docs, "KopfPeering")] == ["a", "b"]
    assert not by_kind(docs, "ClusterKopfPeering")


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("imagee.tag=x", "additional properties 'imagee' not allowed"),
        ("crds.keeep=true", "additional properties 'keeep' not allowed"),
        ("replicaCount=-1", "replicaCount"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("rbac.fleetNamespaces={Bad_NS}", "fleetNamespaces"),
        ("operator.kubeconfigSecretNamespaces={a/b}", "kubeconfigSecretNamespaces"),
        ("rbac.nodePools.statik=true", "additional properties 'statik' not allowed"),
        ("operator.createNamespaces=yes", "createNamespaces"),
    ],
)
def test_schema_rejects_typos_and_bad_values(flag: str, message: str) -> None:
    proc = helm(
        "template", "x", str(CHART), "--kube-version", KUBE_VERSION, "--set", flag, check=False
    )
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_replicas_without_peering_are_refused() -> None:
    proc = helm(
        "template", "x", str(CHART), "--kube-version", KUBE_VERSION,
        "--set", "operator.peering.enabled=false", check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "peering" in proc.stderr
    docs = render({"operator": {"peering": {"enabled": False}}, "replicaCount": 1})
    [dep] = by_kind(docs, "Deployment")
    assert not [
        a for a in dep["spec"]["template"]["spec"]["containers"][0]["args"] if "peering" in a
    ]
    rules = by_kind(docs, "ClusterRole")[0]["rules"]
    assert not [r for r in rules if "kopf.dev" in r["apiGroups"]]


def test_crds_are_the_generated_ones_gated_and_kept() -> None:
    docs = by_kind(render(), "CustomResourceDefinition")
    by_name = {d["metadata"]["name"]: d for d in docs}
    for kind in KINDS:
        expected = crd_for(kind)
        got = by_name[expected["metadata"]["name"]]
        assert got["spec"] == expected["spec"]
        assert got["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    unkept = by_kind(render({"crds": {"keep": False}}), "CustomResourceDefinition")
    assert unkept and all("annotations" not in d["metadata"] for d in unkept)
    assert not by_kind(render({"crds": {"enabled": False}}), "CustomResourceDefinition")


def test_optional_monitoring_objects() -> None:
    docs = render(
        {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}},
            "prometheusRule": {"enabled": True},
        }
    )
    [sm] = by_kind(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kps"
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    [svc] = by_kind(docs, "Service")
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    [rule] = by_kind(docs, "PrometheusRule")
    committed = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    assert rule["spec"] == committed
    assert not by_kind(
        render({"metrics": {"enabled": False}, "serviceMonitor": {"enabled": True}}),
        "ServiceMonitor",
    )


def test_dashboards_ship_as_sidecar_configmaps() -> None:
    cms = by_kind(
        render({"dashboards": {"annotations": {"grafana_folder": "llmfleet"}}}), "ConfigMap"
    )
    assert len(cms) == 4
    for cm in cms:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "llmfleet"}
        [(name, text)] = cm["data"].items()
        assert text + "\n" == (CHART / "dashboards" / name).read_text()
    assert not by_kind(render({"dashboards": {"enabled": False}}), "ConfigMap")


WHERE = {"": "cluster", "-fleet": "fleet", "-kubeconfigs": "secrets",
         "-machinedeployments": "capi", "-peering": "watched"}  # fmt: skip


def _grants(docs: list[dict]) -> set[tuple[str, str, str, str, str]]:
    """(group, resource, verb, where, namespace) of every rule of the rendered ClusterRole
    ("" namespace) and Roles, each Role bound (RoleBinding of its name and namespace) to the
    chart's ServiceAccount."""
    [sa] = by_kind(docs, "ServiceAccount")
    subject = {"kind": "ServiceAccount", "name": sa["metadata"]["name"],
               "namespace": sa["metadata"]["namespace"]}  # fmt: skip
    bound = {
        (b["metadata"].get("namespace", ""), b["roleRef"]["name"])
        for b in by_kind(docs, "RoleBinding") + by_kind(docs, "ClusterRoleBinding")
        if b["subjects"] == [subject]
    }
    out = set()
    for role in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
        ns = role["metadata"].get("namespace", "")
        assert (ns, role["metadata"]["name"]) in bound, role["metadata"]
        suffix = role["metadata"]["name"].removeprefix("llmfleet")
        for rule in role["rules"]:
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    for v in rule["verbs"]:
                        out.add((g, r, v, WHERE[suffix], ns))
    return out


# (values, the README "when" cells that are on, the namespaces of each "where")
RBAC_CASES = {
    "defaults": (
        {},
        {"always", "operator.peering.enabled without operator.watchNamespaces"},
        {"cluster": [""], "fleet": ["llmfleet"], "secrets": ["llmfleet"], "capi": ["llmfleet"]},
    ),
    "namespaced, every option": (
        {
            "operator": {"watchNamespaces": ["a", "b"], "createNamespaces": True,
                         "kubeconfigSecretNamespaces": ["kc"]},
            "rbac": {"nodePools": {"static": True, "clusterAPINamespaces": ["capi-system"]}},
        },
        {"always", "operator.createNamespaces", "rbac.nodePools.static",
         "operator.peering.enabled with operator.watchNamespaces"},
        {"cluster": [""], "fleet": ["a", "b"], "secrets": ["kc"], "capi": ["capi-system"],
         "watched": ["a", "b"]},
    ),
    "fleet namespaces apart, no node-pool providers, no peering": (
        {
            "replicaCount": 1,
            "operator": {"peering": {"enabled": False}},
            "rbac": {"fleetNamespaces": ["f1", "f2"],
                     "nodePools": {"clusterAPI": False, "karpenter": False}},
        },
        {"always"},
        {"cluster": [""], "fleet": ["f1", "f2"], "secrets": ["llmfleet"]},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(RBAC_CASES))
def test_rbac_is_exactly_what_the_readme_lists(case: str) -> None:
    values, on, where = RBAC_CASES[case]
    expected = set()
    for g, r, v, w, when in readme_rbac_rows():
        default_on = when.endswith("(default)")
        flag = when.removesuffix(" (default)")
        enabled = when in on or (default_on and not _disabled(values, flag))
        if enabled:
            expected |= {(g, r, v, w, ns) for ns in where[w]}
    granted = _grants(render(values))
    assert granted == expected, (sorted(granted - expected), sorted(expected - granted))
    assert all("*" not in (g + r + v) for g, r, v, _, _ in granted)


def _disabled(values: dict, flag: str) -> bool:
    node: Any = values
    for key in flag.split("."):
        node = node.get(key, {}) if isinstance(node, dict) else {}
    return node is False


def test_default_rbac_has_no_secrets_namespaces_or_kube_system_rights() -> None:
    docs = render()
    [cluster_role] = by_kind(docs, "ClusterRole")
    cluster_wide = {(g, r, v) for g, r, v, where, _ in _grants(docs) if where == "cluster"}
    assert not [t for t in cluster_wide if t[1] in ("secrets", "deployments", "services",
                                                  "configmaps", "nodes", "pods")]  # fmt: skip
    assert ("", "namespaces", "create") not in cluster_wide
    assert ("", "namespaces", "patch") not in cluster_wide
    assert not [t for t in cluster_wide if t[0] == "rbac.authorization.k8s.io"]
    assert cluster_role["metadata"]["name"] == "llmfleet"
    secret_roles = [r for r in by_kind(docs, "Role") if any("secrets" in x["resources"]
                                                            for x in r["rules"])]  # fmt: skip
    assert [r["metadata"]["namespace"] for r in secret_roles] == ["llmfleet"]
    assert secret_roles[0]["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    ]
    namespaces = {d["metadata"].get("namespace") for d in docs}
    assert "kube-system" not in namespaces


@pytest.mark.parametrize(
    ("values", "what"),
    [
        ({"rbac": {"fleetNamespaces": ["kube-system"]}}, "the fleet namespaces"),
        ({"operator": {"kubeconfigSecretNamespaces": ["x", "kube-system"]}},
         "the kubeconfig Secret namespaces"),
        ({"rbac": {"nodePools": {"clusterAPINamespaces": ["kube-system"]}}},
         "the Cluster API namespaces"),
    ],
)  # fmt: skip
def test_rights_in_kube_system_need_a_value_that_asks(
    values: dict, what: str, tmp_path: Path
) -> None:
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    args = ["template", "x", str(CHART), "--kube-version", KUBE_VERSION]
    proc = helm(*args, "-f", str(path), check=False)
    assert proc.returncode != 0
    assert f"{what} (" in proc.stderr and "include kube-system" in proc.stderr, proc.stderr
    assert "rbac.allowKubeSystem=true" in proc.stderr
    # the release in kube-system: its own namespace is the default of both lists
    proc = helm("template", "x", str(CHART), "-n", "kube-system", "--kube-version", KUBE_VERSION,
                check=False)  # fmt: skip
    assert proc.returncode != 0 and "include kube-system" in proc.stderr
    values.setdefault("rbac", {})["allowKubeSystem"] = True
    assert by_kind(render(values), "Role")


def _container(docs: list[dict]) -> dict:
    [dep] = by_kind(docs, "Deployment")
    return dep["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def test_the_operator_gets_the_trust_settings_of_its_rbac() -> None:
    c = _container(render())
    assert "--kubeconfig-secret-namespaces=llmfleet" in c["args"]
    assert "--metrics-address=0.0.0.0" in c["args"]
    assert not [a for a in c["args"] if a.startswith(("--create-namespaces", "--prometheus-allow"))]
    assert {"name": "POD_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}} in c["env"]  # fmt: skip
    docs = render(
        {
            "operator": {
                "kubeconfigSecretNamespaces": ["kc-a", "kc-b"],
                "createNamespaces": True,
                "prometheusAllow": ["*.monitoring.svc", "10.0.0.0/8"],
            },
            "metrics": {"address": "127.0.0.1"},
        }
    )
    c = _container(docs)
    assert "--kubeconfig-secret-namespaces=kc-a,kc-b" in c["args"]
    assert "--create-namespaces" in c["args"]
    assert "--prometheus-allow=*.monitoring.svc,10.0.0.0/8" in c["args"]
    assert "--metrics-address=127.0.0.1" in c["args"]
    # the Secrets the operator may read are exactly those the chart lets it get
    assert sorted(
        r["metadata"]["namespace"]
        for r in by_kind(docs, "Role")
        if r["metadata"]["name"].endswith("-kubeconfigs")
    ) == ["kc-a", "kc-b"]
    assert not [a for a in _container(render({"metrics": {"enabled": False}}))["args"]
                if a.startswith("--metrics")]  # fmt: skip


def test_the_chart_args_are_operator_flags() -> None:
    """Every flag the chart passes parses (the real CLI parser), with every option on."""
    from llmfleet.cli import build_parser

    c = _container(render({"operator": {"createNamespaces": True, "prometheusAllow": ["*.svc"],
                                        "watchNamespaces": ["a"]}}))  # fmt: skip
    args = build_parser().parse_args(c["args"])
    assert args.kubeconfig_secret_namespaces == ["llmfleet"]
    assert args.create_namespaces is True and args.prometheus_allow == ["*.svc"]
    assert args.metrics_address == "0.0.0.0" and args.namespace == ["a"]


def test_every_value_is_documented_and_in_the_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    text = (CHART / "values.yaml").read_text().splitlines()

    def walk(v: object, s: dict, path: str) -> None:
        assert s.get("description") or path == "", f"{path}: no description in the schema"
        if isinstance(v, dict) and s.get("additionalProperties") is False:
            assert set(v) == set(s["properties"]), path
            for k, sub in v.items():
                walk(sub, s["properties"][k], f"{path}.{k}".lstrip("."))

    walk(values, schema, "")
    # every key of the chart's own objects (not Kubernetes pass-through blocks) has a comment
    # on the line above, or is a parent whose children do
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(text):
        m = re.match(r"^(\s*)([A-Za-z]+):\s*(\S.*)?$", line)
        if not m:
            continue
        indent = len(m.group(1))
        stack = [(d, k) for d, k in stack if d < indent]
        node = schema
        for _, k in stack:
            node = node.get("properties", {}).get(k, {})
        stack.append((indent, m.group(2)))
        if node.get("additionalProperties") is not False or m.group(3) is None:
            continue
        assert text[i - 1].strip().startswith("#"), (
            f"values.yaml line {i + 1}: `{m.group(2)}` has no comment"
        )
