"""The real helm (``hack/bin/helm``, built by ``hack/tools.sh helm``) on the llmfleet chart."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llmfleet"
HELM = ROOT / "hack" / "bin" / "helm"
# Offline, helm assumes an old Kubernetes; the chart's kubeVersion needs >= 1.29.
KUBE_VERSION = "1.34.0"


def helm(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        raise AssertionError(f"{HELM} is missing: run `bash hack/tools.sh helm`")
    proc = subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def render(
    values: dict[str, Any] | None = None,
    *,
    release: str = "llmfleet",
    namespace: str = "llmfleet",
    include_crds: bool = False,
) -> list[dict[str, Any]]:
    """``helm template`` with ``values`` (as a JSON values file); the parsed documents."""
    args = ["template", release, str(CHART), "-n", namespace, "--kube-version", KUBE_VERSION]
    if include_crds:
        args.append("--include-crds")
    with tempfile.TemporaryDirectory() as tmp:
        if values:
            path = Path(tmp) / "values.json"  # JSON is YAML
            path.write_text(json.dumps(values))
            args += ["-f", str(path)]
        out = helm(*args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def readme_rbac_rows() -> list[tuple[str, str, str, str, str]]:
    """(group, resource, verb, where, when) of every row of the chart README's RBAC table
    (``where``: cluster, fleet, secrets, capi, watched; ``when``: ``always`` or the values
    that add the row)."""
    text = (CHART / "README.md").read_text()
    section = text.split("## RBAC", 1)[1].split("\n## ", 1)[0]
    out = []
    for line in section.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or not re.fullmatch(r"[a-z][a-z0-9.\-]*|\(core\)", cells[0]):
            continue
        group = "" if cells[0] == "(core)" else cells[0]
        for res in cells[1].split(","):
            for verb in cells[2].split(","):
                out.append(
                    (
                        group,
                        res.strip().strip("`"),
                        verb.strip(),
                        cells[3],
                        cells[4].replace("`", ""),
                    )
                )
    return out


def readme_rbac() -> set[tuple[str, str, str]]:
    """(group, resource, verb) triples the chart grants by default, from the RBAC table of
    the chart README (rows ``always`` or on ``(default)``)."""
    return {
        (g, r, v)
        for g, r, v, _where, when in readme_rbac_rows()
        if when == "always" or when.endswith("(default)")
    }
