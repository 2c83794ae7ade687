"""The apiserver and ``llmfleet validate`` accept and reject the same objects.

Hypothesis (derandomized: the same objects on every run) mutates valid manifests of every
kind: it drops optional fields, nulls them, puts numbers out of bounds and on them, sets
bad names, wrong JSON types, empty, huge and pattern-breaking strings, duplicates list
entries, adds unknown fields and fills in optional objects. Each object goes to the real
kube-apiserver as a server-side dry-run create (``dryRun=All``, ``fieldValidation=Strict``
as kubectl sends) and through the offline validator (:func:`llmfleet.api.loading.parse_object`,
what ``llmfleet validate`` runs on each document); the answers must agree on every one.
Cross-object references (a TenantQuota's tier exists, ...) are not part of the comparison:
the apiserver cannot see them; ``llmfleet validate`` reports them separately.

Checks pydantic makes and the apiserver cannot (a PromQL template's nesting and string
literals, see ``promql_structure_problem``) are not generated here; the unit tests cover them.
"""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from llmfleet.api import API_VERSION, BY_KIND
from llmfleet.api.loading import ManifestError, parse_object
from llmfleet.kube.client import Cluster
from support.corpus import BATCH, EXAMPLES, KINDS, manifests

# -- the two enforcers -----------------------------------------------------------------------


def _plural(kind: str) -> str:
    return BY_KIND[kind].info.plural


class DryRun:
    """Server-side dry-run creates on one connection pool (thread-safe, batched)."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.pool = cluster.api.rest_client.pool_manager
        self.host = cluster.api.configuration.host
        self.namespace = namespace

    def accepts(self, kind: str, doc: dict[str, Any]) -> tuple[bool, str]:
        base = f"{self.host}/apis/{API_VERSION}"
        if BY_KIND[kind].info.scope == "Namespaced":
            url = f"{base}/namespaces/{self.namespace}/{_plural(kind)}"
        else:
            url = f"{base}/{_plural(kind)}"
        r = self.pool.request(
            "POST",
            f"{url}?dryRun=All&fieldValidation=Strict",
            body=json.dumps(doc).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            timeout=30,
        )
        text = r.data.decode(errors="replace")
        if r.status == 201:
            return True, ""
        if r.status in (400, 422):
            return False, json.loads(text).get("message", text)
        raise AssertionError(f"apiserver answered {r.status} for {kind}: {text[:500]}")


def offline_accepts(doc: dict[str, Any], namespace: str) -> tuple[bool, str]:
    try:
        parse_object(copy.deepcopy(doc), namespace=namespace)
    except ManifestError as err:
        return False, str(err)
    return True, ""


def test_apiserver_and_offline_validator_agree_on_generated_objects(
    cluster: Cluster, namespace: str, capsys: pytest.CaptureFixture[str]
):
    server = DryRun(cluster, namespace)
    counts: Counter[tuple[str, str]] = Counter()
    disagreements: list[str] = []
    started = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=4)

    def check(kind: str, doc: dict[str, Any]) -> None:
        if BY_KIND[kind].info.scope == "Namespaced":
            doc["metadata"]["namespace"] = namespace
        srv, srv_msg = server.accepts(kind, doc)
        off, off_msg = offline_accepts(doc, namespace)
        counts[(kind, "accepted" if srv else "rejected")] += 1
        if srv != off:
            disagreements.append(
                f"{kind}: apiserver {'accepts' if srv else 'rejects'} ({srv_msg[:300]}), "
                f"offline {'accepts' if off else 'rejects'} ({off_msg[:300]}): "
                f"{json.dumps(doc)[:800]}"
            )

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(manifests(), min_size=BATCH, max_size=BATCH))
    def batch(objects: list[tuple[str, dict[str, Any]]]) -> None:
        run: Callable[[tuple[str, dict[str, Any]]], None] = lambda o: check(*o)  # noqa: E731
        list(pool.map(run, objects))

    try:
        batch()
    finally:
        pool.shutdown()
    elapsed = time.monotonic() - started
    total = sum(counts.values())
    lines = [f"{total} objects in {elapsed:.1f} s; disagreements = {len(disagreements)}"]
    for kind in KINDS:
        lines.append(
            f"  {kind:12} accepted {counts[(kind, 'accepted')]:4}  "
            f"rejected {counts[(kind, 'rejected')]:4}"
        )
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert not disagreements, "\n".join([*lines, *disagreements[:25]])
    assert total >= 1000, lines
    for kind in KINDS:
        assert counts[(kind, "accepted")] >= 10 and counts[(kind, "rejected")] >= 10, lines
