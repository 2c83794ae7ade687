"""The fleet in a box (``hack/fleet.sh``) as the box's tests start it: its own free port
block and a random loopback Service range, so it never collides with another box running at
the same time; the subcommands, the harness's state and the logs of what it started."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from support.controlplane import find_free_port_block

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "hack" / "fleet.sh"
NAMESPACE = "llmfleet"


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    """``predicate()`` once it is truthy, polled every ``every`` s; an AssertionError naming
    ``what`` and the last value after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


class FleetBox:
    """``hack/fleet.sh SUB DIR`` with ``FLEET_PORT`` at a free block of ``ports`` ports (the
    control plane takes the first four, Prometheus ``+9``) and ``env`` on top."""

    log_names: tuple[str, ...] = ("harness", "kwok", "kube-scheduler")

    def __init__(self, workdir: Path, env: Mapping[str, str] | None = None, *, ports: int = 10,
                 scrape_interval: str = "1s") -> None:
        self.dir = workdir
        self.port = port = find_free_port_block(ports)
        octets = (random.randrange(128, 250), random.randrange(0, 256))
        self.env = {
            **os.environ,
            "FLEET_PORT": str(port),
            "FLEET_PROMETHEUS_PORT": str(port + 9),
            "FLEET_SERVICE_CIDR": f"127.{octets[0]}.{octets[1]}.0/24",
            "FLEET_NAMESPACE": NAMESPACE,
            "FLEET_SCRAPE_INTERVAL": scrape_interval,
            "LLMFLEET_VENV": str(Path(sys.executable).parents[1]),
            **(env or {}),
        }
        self.prometheus = f"http://127.0.0.1:{port + 9}"

    def run(self, sub: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(FLEET), sub, str(self.dir)],
            check=False, env=self.env, cwd=ROOT, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "cp" / "kubeconfig"

    def state(self) -> dict[str, Any]:
        """The harness's ``state.json`` (empty while it has written none)."""
        try:
            return json.loads((self.dir / "harness" / "state.json").read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return {}

    def logs(self, lines: int = 20, names: Iterable[str] | None = None) -> str:
        """The last ``lines`` of each log of ``names`` (default :attr:`log_names`)."""
        out = []
        for name in names or self.log_names:
            p = self.dir / f"{name}.log"
            if p.exists():
                tail = "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
                out.append(f"--- {name}.log\n{tail}")
        return "\n".join(out)
