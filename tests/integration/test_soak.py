"""``llmfleet bench soak`` in small: the operator as a process against its own control plane
and Prometheus (each behind a fault proxy) for ~90 s, through one apiserver outage of ~20 s
(SIGKILL, restart on the same data) and one period of Prometheus answers with non-numeric
sample values. The loop never restarts, no object is lost or duplicated, and the fleet
converges after each fault within the benchmark's own target."""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from llmfleet_bench import soak
from llmfleet_bench.faultproxy import Fault, FaultProxy


def test_a_short_soak_survives_an_apiserver_outage_and_prometheus_garbage(tmp_path: Path):
    out = tmp_path / "soak.json"
    code = soak.main(
        ["--minutes", "1.5", "--seed", "7", "--faults", "apiserver-kill:20,prometheus-values:20",
         "--json", str(out), "--workdir", str(tmp_path / "run")]
    )  # fmt: skip
    r = json.loads(out.read_text())
    faults = {f["kind"]: f for f in r["faults"]}
    assert set(faults) == {"apiserver-kill", "prometheus-values"}, r["faults"]
    # the outage was real: the apiserver was down ~20 s and restarted on the same data
    assert 20 <= faults["apiserver-kill"]["seconds"] < 60
    assert r["proxies"]["apiserver"].get("upstream-down", 0) > 0, r["proxies"]
    # the garbage reached the operator: some Prometheus answers had non-numeric values
    assert faults["prometheus-values"]["requests_faulted"] > 0, faults["prometheus-values"]

    loop = r["loop"]
    assert loop["operator_exits"] == 0, loop["exits"]
    assert loop["healthz"]["false_alarms"] == 0, loop["healthz"]
    assert loop["healthz"]["ok"] > 0
    assert r["metrics"]["llmfleet_planning_cycle_crashes_total"] == 0, r["operator_log"]
    assert r["operator_log"]["cycle_crashes"] == 0, r["operator_log"]

    target = soak.converge_target(r["interval_seconds"]).limit
    for f in r["faults"]:
        assert f["converged_after_s"] is not None, f
        assert f["converged_after_s"] <= target, f
        assert (f["lost"], f["duplicated"]) == (0, 0), f
    assert r["totals"]["not_converged"] == 0 and r["totals"]["unchecked"] == 0
    assert r["cycles"]["converged"] >= 2, r["cycles"]
    assert code == 0


# --------------------------------------------------------------------------- the parts


class _Fleet:
    """A stand-in for :class:`llmfleet.kube.client.Cluster` holding one plan and a fleet."""

    def __init__(
        self, plan: dict, nodes: list[tuple[str, str]], deps: list[tuple[str, str, str, int]]
    ):
        self.plan, self.nodes, self.deps = plan, nodes, deps

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None):
        return {"spec": self.plan} if kind == "FleetPlan" else None

    def list(self, api_version: str, kind: str, namespace: str | None = None, **_: object):
        if kind == "Node":
            return [{"metadata": {"labels": {"llmfleet.dev/region": r, "llmfleet.dev/pool": p}}}
                    for r, p in self.nodes]  # fmt: skip
        return [
            {"metadata": {"labels": {"llmfleet.dev/model": m, "llmfleet.dev/region": r,
                                     "llmfleet.dev/pool": p}}, "spec": {"replicas": n}}
            for m, r, p, n in self.deps
        ]  # fmt: skip


PLAN = {
    "nodes": [{"region": "us", "pool": "od", "nodes": 2}, {"region": "eu", "pool": "od", "nodes": 1}],
    "replicas": [{"model": "a", "region": "us", "pool": "od", "replicas": 3},
                 {"model": "b", "region": "eu", "pool": "od", "replicas": 1},
                 {"model": "c", "region": "eu", "pool": "od", "replicas": 0}],
}  # fmt: skip


def test_the_fleet_check_counts_lost_duplicated_and_drifted_objects():
    exact = _Fleet(PLAN, [("us", "od"), ("us", "od"), ("eu", "od")],
                   [("a", "us", "od", 3), ("b", "eu", "od", 1), ("c", "eu", "od", 0)])  # fmt: skip
    check = soak.check_fleet(exact, "p")  # type: ignore[arg-type]
    assert (check.lost, check.duplicated, check.drift) == (0, 0, 0), check.details

    # a us Node and Deployment b missing; an extra eu Node, a second Deployment for a, one
    # from no plan, and c scaled up against the plan's 0
    bad = _Fleet(PLAN, [("us", "od"), ("eu", "od"), ("eu", "od")],
                 [("a", "us", "od", 3), ("a", "us", "od", 3), ("c", "eu", "od", 2),
                  ("z", "us", "od", 1)])  # fmt: skip
    check = soak.check_fleet(bad, "p")  # type: ignore[arg-type]
    assert check.lost == 2, check.details  # a us Node, Deployment b
    assert check.duplicated == 3, check.details  # an eu Node, a's twin, z
    assert check.drift == 1, check.details  # c: 2 replicas, plan 0


def _upstream() -> tuple[Any, int]:
    """A tiny Prometheus-like HTTP server on 127.0.0.1 (one JSON answer for every GET)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"m": "x"}, "value": [1.0, "42"]}]}}).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as rsp:
            return rsp.status, rsp.headers.get("Content-Type", ""), rsp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def test_the_fault_proxy_forwards_and_injects_each_fault():
    server, port = _upstream()
    proxy = FaultProxy("test", port, seed=1)
    try:
        url = f"{proxy.url}/api/v1/query?query=up"
        code, ctype, body = _get(url)
        assert code == 200 and json.loads(body)["data"]["result"][0]["value"][1] == "42"

        proxy.set_fault(Fault("html"))
        code, ctype, body = _get(url)
        assert code == 200 and ctype.startswith("text/html") and "<html>" in body

        proxy.set_fault(Fault("values"))
        code, _ctype, body = _get(url)
        assert json.loads(body)["data"]["result"][0]["value"][1] == "not-a-number"

        proxy.set_fault(Fault("drop"))
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            _get(url)

        proxy.set_fault(Fault("delay", delay_seconds=1.0))
        t0 = time.monotonic()
        assert _get(url)[0] == 200 and time.monotonic() - t0 >= 1.0

        # apiserver faults match only their requests: watches for 410, writes for 409
        proxy.set_fault(Fault("gone"))
        assert _get(url)[0] == 200  # not a watch: forwarded
        code, _ctype, body = _get(f"{proxy.url}/api/v1/pods?watch=true")
        event = json.loads(body.splitlines()[0])
        assert code == 200 and event["type"] == "ERROR" and event["object"]["code"] == 410
        proxy.set_fault(Fault("gone-http"))
        assert _get(f"{proxy.url}/api/v1/pods?watch=1")[0] == 410
        proxy.set_fault(Fault("conflict"))
        assert _get(url)[0] == 200  # a GET is no write
        req = urllib.request.Request(f"{proxy.url}/api/v1/namespaces", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 409 and json.load(err.value)["reason"] == "Conflict"

        proxy.set_fault(None)
        assert _get(url)[0] == 200
        assert proxy.counts["forwarded"] >= 4 and proxy.faulted() == 7, proxy.counts
    finally:
        proxy.stop()
        server.shutdown()
    server.server_close()
    assert _refused(proxy.port)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def test_kopf_sends_a_patch_again_after_409_conflict(monkeypatch: pytest.MonkeyPatch):
    """The soak's finding: a 409 on the planning timer's status patch ended the timer for
    good. The operator makes kopf send such a patch again (a merge patch: safe to repeat)."""
    import asyncio

    from kopf._cogs.clients import errors, patching

    from llmfleet.controller.operator import retry_conflicting_patches

    calls: list[int] = []
    conflict = errors.APIConflictError({"kind": "Status", "code": 409}, status=409, headers={})

    async def flaky(**kwargs: Any) -> str:
        calls.append(1)
        if len(calls) <= 2:
            raise conflict
        return "patched"

    monkeypatch.setattr(patching, "patch_obj", flaky)
    assert retry_conflicting_patches(backoffs=[0.0, 0.0])
    assert asyncio.run(patching.patch_obj(logger=None)) == "patched"
    assert len(calls) == 3  # two conflicts, then the patch went through
    assert retry_conflicting_patches()  # wrapping twice is a no-op
    calls.clear()

    async def always(**kwargs: Any) -> str:
        calls.append(1)
        raise conflict

    monkeypatch.setattr(patching, "patch_obj", always)
    assert retry_conflicting_patches(backoffs=[0.0])
    with pytest.raises(errors.APIConflictError):
        asyncio.run(patching.patch_obj(logger=None))
    assert len(calls) == 2  # the backoffs are spent: the conflict is kopf's again
