"""llm-d's BLIS vLLM latency tables, read from the installed ``llm-d-planner`` package.

``llm-d-planner`` (PyPI, Apache-2.0) ships ``planner/data/performance/benchmarks_BLIS.json``:
points produced by llm-d's BLIS simulator (trained on measured vLLM runs). Each point is one
(model, GPU, tensor-parallel degree, prompt/output length, request rate) with, as the file
states them:

* ``prompt_tokens`` / ``output_tokens`` (with ``*_stdev``): the request shape, tokens
  (mean and standard deviation of the lengths the run drew; ``mean_input_tokens`` and
  ``mean_output_tokens`` repeat the means);
* ``requests_per_second``: offered load (Poisson); ``responses_per_second``: completions/s;
* ``tokens_per_second``: *output* tokens/s served (about ``responses_per_second x
  output_tokens``: 249 at 1 req/s x 256 tokens);
* ``ttft_*``, ``itl_*``, ``e2e_*``: mean, p90, p95, p99 of time to first token, inter-token
  latency and end-to-end latency, all in **milliseconds** (``e2e ~ ttft + itl x output``).

The file is read without importing the package (its ``planner/__init__`` pulls its whole
planner in): :func:`load_table` locates it among the installed distribution's files
(``importlib.metadata``); :func:`parse_table` is the pure part.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

DISTRIBUTION = "llm-d-planner"
"""The PyPI distribution that ships the table (llmfleet's ``dev`` extra installs it)."""
TABLE_PATH = "planner/data/performance/benchmarks_BLIS.json"
"""The table's path inside the distribution."""

_NUMBERS = (
    "prompt_tokens", "prompt_tokens_stdev", "output_tokens", "output_tokens_stdev",
    "requests_per_second", "responses_per_second", "tokens_per_second",
    "ttft_mean", "ttft_p90", "ttft_p95", "ttft_p99",
    "itl_mean", "itl_p90", "itl_p95", "itl_p99",
    "e2e_mean", "e2e_p90", "e2e_p95", "e2e_p99",
)


class BlisTableError(RuntimeError):
    """The table is missing (package not installed) or malformed; the message says which."""


@dataclass(frozen=True)
class BlisConfig:
    """A (model, GPU, tensor-parallel degree) of the table."""

    model: str
    """Hugging Face repo id, lower case as the table has it (``meta-llama/llama-3.1-8b-instruct``)."""
    hardware: str
    """The table's GPU name: ``H100`` or ``A100-80``."""
    tensor_parallel: int
    """``hardware_count``: GPUs of one vLLM instance."""


@dataclass(frozen=True)
class BlisPoint:
    """One table point; latencies in milliseconds as the table has them."""

    config: BlisConfig
    framework_version: str
    prompt_tokens: float
    prompt_tokens_stdev: float
    output_tokens: float
    output_tokens_stdev: float
    requests_per_second: float
    """Offered load."""
    responses_per_second: float
    tokens_per_second: float
    """Output tokens per second served."""
    ttft_mean: float
    ttft_p90: float
    ttft_p95: float
    ttft_p99: float
    itl_mean: float
    itl_p90: float
    itl_p95: float
    itl_p99: float
    e2e_mean: float
    e2e_p90: float
    e2e_p95: float
    e2e_p99: float

    @property
    def shape(self) -> tuple[float, float]:
        """(prompt, output) mean lengths: the points of a configuration with one shape
        differ only in request rate."""
        return (self.prompt_tokens, self.output_tokens)


@dataclass(frozen=True)
class BlisTable:
    points: tuple[BlisPoint, ...]
    source: str
    """Where it was read from (a path, or ``<memory>``)."""
    version: str = ""
    """The distribution's version."""

    def configs(self) -> list[BlisConfig]:
        """Every configuration, sorted."""
        return sorted({p.config for p in self.points},
                      key=lambda c: (c.model, c.hardware, c.tensor_parallel))

    def of(self, config: BlisConfig) -> list[BlisPoint]:
        """The points of ``config``, by shape then request rate."""
        return sorted((p for p in self.points if p.config == config),
                      key=lambda p: (p.shape, p.requests_per_second))


def _number(raw: Mapping[str, Any], key: str, where: str) -> float:
    v = raw.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise BlisTableError(f"{where}: {key} is {v!r}, not a number")
    if v < 0:
        raise BlisTableError(f"{where}: {key} is negative ({v})")
    return float(v)


def parse_table(doc: object, source: str = "<memory>", version: str = "") -> BlisTable:
    """The points of a ``benchmarks_BLIS.json`` document (``{"benchmarks": [...]}``)."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("benchmarks"), list):
        raise BlisTableError(f"{source}: not a BLIS table (no 'benchmarks' list)")
    points: list[BlisPoint] = []
    for i, raw in enumerate(doc["benchmarks"]):
        where = f"{source}: benchmarks[{i}]"
        if not isinstance(raw, Mapping):
            raise BlisTableError(f"{where}: not a mapping")
        model, hw, tp = raw.get("model_hf_repo"), raw.get("hardware"), raw.get("hardware_count")
        if not isinstance(model, str) or not isinstance(hw, str):
            raise BlisTableError(f"{where}: model_hf_repo and hardware must be strings")
        if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
            raise BlisTableError(f"{where}: hardware_count is {tp!r}, not a GPU count")
        nums = {k: _number(raw, k, where) for k in _NUMBERS}
        if nums["requests_per_second"] <= 0 or nums["output_tokens"] < 1:
            raise BlisTableError(f"{where}: requests_per_second and output_tokens must be > 0")
        points.append(BlisPoint(
            config=BlisConfig(model.lower(), hw, tp),
            framework_version=str(raw.get("framework_version", "")), **nums,
        ))
    if not points:
        raise BlisTableError(f"{source}: the table has no points")
    return BlisTable(tuple(points), source, version)


def table_path() -> Path:
    """The installed table's path; :class:`BlisTableError` naming the fix if it is absent."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise BlisTableError(
            f"the BLIS table comes from the PyPI package {DISTRIBUTION!r}, which is not "
            f"installed: pip install '{DISTRIBUTION}>=0.3,<0.4' (llmfleet's dev extra has it)"
        ) from None
    if not any(str(f) == TABLE_PATH for f in dist.files or ()):
        raise BlisTableError(
            f"{DISTRIBUTION} {dist.version} is installed but does not ship {TABLE_PATH}"
        )
    return Path(str(dist.locate_file(TABLE_PATH)))


def load_table() -> BlisTable:
    """Read and parse the installed table."""
    path = table_path()
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BlisTableError(f"{path}: {e}") from e
    return parse_table(doc, str(path), metadata.version(DISTRIBUTION))
