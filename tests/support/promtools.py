"""A real Prometheus for tests: series backfilled with ``promtool tsdb create-blocks-from
openmetrics``, then ``prometheus`` (Debian package) serving them and evaluating rules; or
scraping live targets (:meth:`LocalPrometheus.scrape`)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

Labels = Mapping[str, str]


@dataclass(frozen=True)
class Series:
    """One series: ``value(t)`` sampled every ``step`` seconds over the loaded range."""

    name: str
    labels: Labels
    value: Callable[[float], float]


def openmetrics(series: Iterable[Series], start: float, end: float, step: float) -> str:
    """OpenMetrics text with every family's samples together, each series in time order."""
    families: dict[str, list[Series]] = {}
    for s in series:
        families.setdefault(s.name, []).append(s)
    lines: list[str] = []
    n = int((end - start) // step) + 1
    for name in sorted(families):
        lines.append(f"# TYPE {name} unknown")
        for s in families[name]:
            lab = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            sel = f"{name}{{{lab}}}" if lab else name
            for i in range(n):
                t = start + i * step
                lines.append(f"{sel} {s.value(t):.6g} {t:.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _need(*tools: str) -> None:
    for tool in tools:
        if not shutil.which(tool):
            raise AssertionError(f"{tool} is missing: run `bash hack/tools.sh prometheus`")


def rfc3339(text: str) -> float:
    """Unix time of an RFC 3339 timestamp as Prometheus writes them (nanoseconds)."""
    # fromisoformat takes at most microseconds
    head, _, frac = text.partition(".")
    if frac:
        digits = "".join(c for c in frac if c.isdigit())
        zone = frac[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def scraped_after(targets: list[dict[str, Any]], job: str, t: float) -> bool:
    """Every target of ``job`` in ``/api/v1/targets``' active targets is up and was scraped
    after Unix time ``t``."""
    mine = [x for x in targets if x["labels"].get("job") == job]
    return bool(mine) and all(x["health"] == "up" and rfc3339(x["lastScrape"]) > t for x in mine)


@dataclass
class LocalPrometheus:
    """``prometheus`` on a free port over a temp TSDB holding backfilled series."""

    workdir: Path
    rule_files: list[Path] = field(default_factory=list)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, series: Iterable[Series], start: float, end: float, step: float = 60) -> None:
        """Serve ``series`` backfilled over [start, end] every ``step`` s, and the rules."""
        _need("prometheus", "promtool")
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        om = self.workdir / "series.om"
        om.write_text(openmetrics(series, start, end, step))
        subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self._launch({"global": {"evaluation_interval": "1s", "scrape_interval": "1m"},
                      "rule_files": [str(p) for p in self.rule_files]})  # fmt: skip

    def scrape(self, scrape_configs: list[dict[str, Any]], interval: str = "1s") -> None:
        """Scrape live targets instead: ``scrape_configs`` as in prometheus.yml."""
        _need("prometheus")
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        self._launch({"global": {"evaluation_interval": interval, "scrape_interval": interval},
                      "rule_files": [str(p) for p in self.rule_files],
                      "scrape_configs": scrape_configs})  # fmt: skip

    def scraped_after(self, job: str, t: float) -> bool:
        """Every target of ``job`` is up and was scraped after Unix time ``t``."""
        return scraped_after(self.api("targets")["activeTargets"], job, t)

    def _launch(self, config: dict[str, Any]) -> None:
        data = self.workdir / "data"
        cfg = self.workdir / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(config))
        self.port = _free_port()
        log = (self.workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={cfg}",
                f"--storage.tsdb.path={data}",
                "--storage.tsdb.retention.time=60d",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as rsp:
                    if rsp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready after 60s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return (self.workdir / "prometheus.log").read_text(errors="replace")

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=30) as rsp:
                body = json.load(rsp)
        except urllib.error.HTTPError as err:
            body = json.load(err)
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        return list(data["result"]) if isinstance(data["result"], list) else [data["result"]]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
