"""Demand at the gateway (issue 14), in CI: the same check as gateway_demand.py
(``demandcheck.check_gateway_demand``) with the router forwarding straight to one emulator
instead of through Traefik and the Services (Traefik takes 16 minutes to build cold, more
than CI has). What the check reads is the router's gen_ai series, which Traefik does not
touch: the load generator's headers, the router's header attributes, Prometheus's relabelling
of the origin and the default envoy-ai-gateway templates are all the real ones.

Processes on 127.0.0.1: ``python -m llmfleet.box.emulator``, ``llmfleet router serve`` and
Debian's Prometheus (``bash hack/tools.sh prometheus``)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from demandcheck import HEADER_ATTRIBUTES, check_gateway_demand, gateway_job

from support.controlplane import find_free_port_block
from support.fleetbox import wait_for
from support.promtools import LocalPrometheus

SERVED = "org/tiny"


@dataclass
class Direct:
    router: str
    prom: LocalPrometheus
    logs: dict[str, Path]

    def tail(self) -> str:
        return "\n".join(f"--- {name}\n{p.read_text(errors='replace')[-2000:]}"
                         for name, p in self.logs.items() if p.exists())  # fmt: skip


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.fixture
def direct(tmp_path: Path) -> Iterator[Direct]:
    port = find_free_port_block(3)
    emulator, router, metrics = port, port + 1, port + 2
    config = tmp_path / "router.json"
    # hack/fleet.sh's router configuration: no routing tiers, every request keeps its model
    config.write_text(json.dumps({"apiVersion": "llmfleet.dev/router/v1", "tiers": {},
                                  "headers": {"model": "x-gateway-model-name"}}))  # fmt: skip
    commands = {
        "emulator": [sys.executable, "-m", "llmfleet.box.emulator", "--model", SERVED,
                     "--prefill", "200000", "--decode", "20000", "--max-seqs", "64",
                     "--host", "127.0.0.1", "--port", str(emulator)],
        "router": [sys.executable, "-m", "llmfleet.cli", "router", "serve",
                   "--config", str(config), "--upstream", f"http://127.0.0.1:{emulator}",
                   "--host", "127.0.0.1", "--port", str(router),
                   "--metrics-port", str(metrics),
                   "--metrics-header-attributes", HEADER_ATTRIBUTES],
    }  # fmt: skip
    logs = {name: tmp_path / f"{name}.log" for name in (*commands, "prometheus")}
    procs: list[subprocess.Popen[bytes]] = []
    prom = LocalPrometheus(tmp_path / "prometheus")
    try:
        for name, cmd in commands.items():
            with logs[name].open("wb") as out:
                procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT))
        box = Direct(f"http://127.0.0.1:{router}", prom, logs)
        wait_for(lambda: _up(f"http://127.0.0.1:{emulator}/health"), 60,
                 f"the emulator\n{box.tail()}")  # fmt: skip
        wait_for(lambda: _up(f"{box.router}/healthz"), 60, f"the router\n{box.tail()}")
        prom.scrape([gateway_job(f"127.0.0.1:{metrics}")], interval="500ms")
        logs["prometheus"] = prom.workdir / "prometheus.log"
        yield box
    finally:
        prom.stop()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


def test_the_envoy_ai_gateway_profile_reads_what_the_load_generator_sent(direct: Direct) -> None:
    print("\n" + check_gateway_demand(direct.router, SERVED, direct.prom))
