"""A fleet in a box for the box's tests: ``hack/fleet.sh up`` on a free port block and a
random loopback Service range (never colliding with another box), optionally with the
operator (``FLEET_OPERATOR=1``), and the load generator run in a thread."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmfleet.box.loadgen import Outcome, Planned, Router, replay
from support.fleetbox import FleetBox


class Box(FleetBox):
    log_names = ("operator", "harness", "kwok", "kube-scheduler")

    def __init__(self, workdir: Path, *, operator: bool = False, plan_interval: int = 30) -> None:
        super().__init__(workdir, {
            "FLEET_TRAEFIK": "0",
            "FLEET_OPERATOR": "1" if operator else "0",
            "FLEET_PLAN_INTERVAL": str(plan_interval),
        })  # fmt: skip

    def set_down(self, regions: Sequence[str]) -> None:
        """The harness's emulators of ``regions`` die (and stay dead)."""
        path = self.dir / "harness" / "down-regions"
        tmp = path.with_name(".down-regions.tmp")
        tmp.write_text("".join(f"{r}\n" for r in regions))
        tmp.replace(path)

    def query(self, expr: str) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.prometheus}/api/v1/query?{q}", timeout=5) as r:
            return json.loads(r.read())["data"]["result"]  # type: ignore[no-any-return]


class LoadThread(threading.Thread):
    """:func:`llmfleet.box.loadgen.replay` in a thread (its own event loop); the outcomes in
    :attr:`outcomes` once it is done, ``t0`` the monotonic time the replay started."""

    def __init__(
        self, planned: Sequence[Planned], model: str, *, base_url: str = "",
        router: Router | None = None, timeout_s: float = 60.0,
    ) -> None:  # fmt: skip
        super().__init__(name="loadgen", daemon=True)
        self.planned = list(planned)
        self.model, self.base_url, self.router, self.timeout_s = model, base_url, router, timeout_s
        self.outcomes: list[Outcome] = []
        self.done: list[Outcome] = []
        """The outcomes so far, in the order they completed."""
        self.t0 = float("nan")
        self.wall = float("nan")
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.t0 = time.monotonic()
            self.outcomes = asyncio.run(
                replay(
                    self.base_url, self.model, self.planned, router=self.router,
                    timeout_s=self.timeout_s, force_close=True, on_outcome=self.done.append,
                )
            )  # fmt: skip
            self.wall = time.monotonic() - self.t0
        except BaseException as err:  # the test thread re-raises it
            self.error = err

    def elapsed(self) -> float:
        return time.monotonic() - self.t0


def phases(*parts: tuple[Sequence[Planned], float]) -> list[Planned]:
    """Planned requests of several (phase, wall seconds) one after the other: each phase's
    times shifted by the wall seconds of the phases before it, indices renumbered."""
    out: list[Planned] = []
    offset = 0.0
    for part, wall in parts:
        for p in part:
            out.append(Planned(len(out), offset + p.at, p.prompt_tokens, p.output_tokens,
                               p.tenant, p.tier, p.origin))  # fmt: skip
        offset += wall
    return out
