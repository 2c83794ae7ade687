"""Readers for the public LLM inference traces in ``<repo>/../shared/traces`` (see its README).

* Azure LLM inference 2023 (Splitwise): one request per row — arrival time, context (prompt)
  tokens, generated tokens. :func:`read_azure`.
* ServeGen (Alibaba Model Studio), pools ``m-small`` and ``m-mid``: per client (tenant), a
  14-day curve of 2,016 windows of 600 s — request rate, inter-arrival CV, fitted inter-arrival
  distribution and its parameters — and 6-hourly empirical prompt/output length
  distributions. :func:`read_servegen` reads a pool's curves eagerly (fast, numpy) and the
  length distributions lazily (the json files are large), falling back to the pool-wide
  distribution of the same 6-hour window when a client's file is absent.

Demand from a ServeGen curve (:func:`servegen_history`), per window w and 6-hour block b(w):

    requests/s = rate[w],  prompt tokens/s = rate[w] E[input | b(w)],
    output tokens/s = rate[w] E[output | b(w)].

The pool-wide distribution of a block is the mixture of the clients that have a file,
weighted by the requests each sent in the block (sum of rate x 600 s over its windows).
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from llmfleet.forecast.types import DemandHistory, DemandRates, FlowKey

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

WINDOW_SECONDS = 600
LENGTH_BLOCK_SECONDS = 21_600
TRACES_ENV = "LLMFLEET_TRACES_DIR"
POOLS: tuple[str, ...] = ("m-small", "m-mid")
AzureService = Literal["code", "conv"]


class TracesNotFoundError(FileNotFoundError):
    """The trace files are not where they were looked for."""


def default_traces_dir() -> Path:
    """``$LLMFLEET_TRACES_DIR`` if set, else ``<repo root>/../shared/traces``."""
    env = os.environ.get(TRACES_ENV)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[3]
    return repo.parent / "shared" / "traces"


def _root(path: Path | str | None) -> Path:
    return default_traces_dir() if path is None else Path(path)


def _missing(what: str, where: Path) -> TracesNotFoundError:
    return TracesNotFoundError(
        f"{what} not found at {where}. The traces live in <repo>/../shared/traces (see its "
        f"README.md); pass path=... or set {TRACES_ENV} to the traces directory."
    )


# ---------------------------------------------------------------- Azure LLM 2023


@dataclass(frozen=True)
class AzureTrace:
    """One Azure service's requests, sorted by arrival."""

    service: str
    start_unix: float
    """Arrival of the first request, Unix seconds (the trace's wall clock read as UTC)."""
    arrival_s: FloatArray
    """Arrival of each request, seconds after ``start_unix``."""
    prompt_tokens: IntArray
    output_tokens: IntArray

    def __len__(self) -> int:
        return int(self.arrival_s.size)


def read_azure(service: AzureService, path: Path | str | None = None) -> AzureTrace:
    """Read ``AzureLLMInferenceTrace_<service>.csv`` from ``<path>/azure-llm-2023``."""
    file = _root(path) / "azure-llm-2023" / f"AzureLLMInferenceTrace_{service}.csv"
    if not file.is_file():
        raise _missing(f"Azure LLM trace {service!r}", file)
    lines = file.read_text().splitlines()
    header = lines[0].split(",")
    if header != ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]:
        raise ValueError(f"{file}: unexpected header {header}")
    cols = [line.split(",") for line in lines[1:] if line]
    stamps = np.array([c[0].replace(" ", "T") for c in cols], dtype="datetime64[ns]")
    ns = stamps.astype(np.int64)
    order = np.argsort(ns, kind="stable")
    ns = ns[order]
    prompt = np.array([int(c[1]) for c in cols], dtype=np.int64)[order]
    output = np.array([int(c[2]) for c in cols], dtype=np.int64)[order]
    t0 = int(ns[0]) if ns.size else 0
    return AzureTrace(
        service=service,
        start_unix=t0 / 1e9,
        arrival_s=(ns - t0).astype(np.float64) / 1e9,
        prompt_tokens=prompt,
        output_tokens=output,
    )


# ---------------------------------------------------------------- ServeGen lengths


@dataclass(frozen=True)
class LengthDistribution:
    """An empirical token-length distribution (lengths ascending, probabilities sum to 1)."""

    lengths: IntArray
    probs: FloatArray

    @property
    def empty(self) -> bool:
        return self.lengths.size == 0

    @property
    def mean(self) -> float:
        """E[length] (NaN when empty)."""
        return (
            float(np.dot(self.lengths.astype(np.float64), self.probs))
            if self.lengths.size
            else float("nan")
        )

    def sample(self, rng: np.random.Generator, size: int) -> IntArray:
        """``size`` lengths drawn from the distribution."""
        if self.empty:
            raise ValueError("cannot sample an empty length distribution")
        out: IntArray = rng.choice(self.lengths, size=size, p=self.probs)
        return out


EMPTY_LENGTHS = LengthDistribution(np.zeros(0, dtype=np.int64), np.zeros(0))


def parse_length_literal(text: str) -> LengthDistribution:
    """Parse ``"{len: prob, ...}"``. A numeric fast path (8x faster than ``ast.literal_eval``
    on these files) is checked for integral lengths; anything unusual goes through
    ``ast.literal_eval``. Probabilities are renormalised to sum to 1."""
    body = text.strip()
    if body in ("{}", ""):
        return EMPTY_LENGTHS
    try:
        flat = np.array(body[1:-1].replace(":", ",").split(","), dtype=np.float64)
        keys, probs = flat[0::2], flat[1::2]
        if flat.size % 2 or not np.all(keys == np.round(keys)) or not body.startswith("{"):
            raise ValueError(body[:40])
    except ValueError:
        parsed = ast.literal_eval(body)
        if not isinstance(parsed, dict):
            raise ValueError(f"not a length distribution: {body[:60]!r}") from None
        keys = np.array(list(parsed.keys()), dtype=np.float64)
        probs = np.array(list(parsed.values()), dtype=np.float64)
    order = np.argsort(keys)
    p = np.clip(probs[order], 0.0, None)
    total = p.sum()
    if total <= 0:
        return EMPTY_LENGTHS
    return LengthDistribution(keys[order].astype(np.int64), p / total)


@dataclass(frozen=True)
class LengthWindows:
    """Prompt and output length distributions per 6-hour block of the 14 days."""

    block_start_s: IntArray
    input: tuple[LengthDistribution, ...]
    output: tuple[LengthDistribution, ...]
    source: Literal["client", "pool"]
    """``pool`` when the client's own file is absent and the pool-wide mixture stands in."""

    @cached_property
    def _means(self) -> tuple[FloatArray, FloatArray]:
        return (
            np.array([d.mean for d in self.input], dtype=np.float64),
            np.array([d.mean for d in self.output], dtype=np.float64),
        )

    def means(self) -> tuple[FloatArray, FloatArray]:
        """(E[input], E[output]) per block, NaN where a block is empty (fresh copies)."""
        mi, mo = self._means
        return mi.copy(), mo.copy()


def read_lengths(file: Path) -> LengthWindows:
    """Parse one ``chunk-<N>-dataset.json``."""
    try:
        raw = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: not a ServeGen length file ({e})") from e
    starts = sorted(raw, key=int)
    return LengthWindows(
        block_start_s=np.array([int(s) for s in starts], dtype=np.int64),
        input=tuple(parse_length_literal(raw[s]["input_tokens"]) for s in starts),
        output=tuple(parse_length_literal(raw[s]["output_tokens"]) for s in starts),
        source="client",
    )


def _mixture(parts: Sequence[tuple[float, LengthDistribution]]) -> LengthDistribution:
    parts = [(w, d) for w, d in parts if w > 0 and not d.empty]
    if not parts:
        return EMPTY_LENGTHS
    lengths = np.concatenate([d.lengths for _, d in parts])
    probs = np.concatenate([w * d.probs for w, d in parts])
    uniq, inv = np.unique(lengths, return_inverse=True)
    p = np.bincount(inv, weights=probs)
    return LengthDistribution(uniq.astype(np.int64), p / p.sum())


# ---------------------------------------------------------------- ServeGen clients


@dataclass(frozen=True, eq=False)
class ServeGenClient:
    """One client (tenant) of a ServeGen pool: its 14-day rate curve, 600 s per window."""

    pool: str
    chunk: int
    window_start_s: IntArray
    rate: FloatArray
    """Requests per second in each window."""
    cv: FloatArray
    """Coefficient of variation of inter-arrival times."""
    dist: npt.NDArray[np.str_]
    """Fitted inter-arrival distribution: ``Gamma``, ``Weibull``, ``Exponential`` or ``""``."""
    p1: FloatArray
    """Shape parameter of ``dist``."""
    p2: FloatArray
    """Scale parameter of ``dist``."""
    dataset_file: Path | None
    """The client's length file, or None when absent (the pool-wide mixture is used)."""

    @property
    def name(self) -> str:
        return f"{self.pool}/chunk-{self.chunk}"

    @property
    def requests(self) -> float:
        """Total requests over the 14 days (sum of rate x window)."""
        return float(self.rate.sum() * WINDOW_SECONDS)


def read_client_curve(file: Path, pool: str, chunk: int, dataset: Path | None) -> ServeGenClient:
    """Parse one headerless ``chunk-<N>-trace.csv``."""
    rows = [line.split(",") for line in file.read_text().splitlines() if line]
    if any(len(r) != 6 for r in rows):
        raise ValueError(f"{file}: expected 6 columns per row")
    num = np.array(
        [[r[0], r[1], r[2] or "0", r[4] or "0", r[5] or "0"] for r in rows], dtype=np.float64
    )
    return ServeGenClient(
        pool=pool,
        chunk=chunk,
        window_start_s=num[:, 0].astype(np.int64),
        rate=num[:, 1],
        cv=num[:, 2],
        dist=np.array([r[3] for r in rows], dtype=np.str_),
        p1=num[:, 3],
        p2=num[:, 4],
        dataset_file=dataset,
    )


@dataclass(eq=False)
class ServeGenPool:
    """All clients of one pool; length distributions are parsed on first use and cached."""

    name: str
    directory: Path
    clients: tuple[ServeGenClient, ...]
    _lengths: dict[int, LengthWindows] = field(default_factory=dict, repr=False)

    def client(self, chunk: int) -> ServeGenClient:
        for c in self.clients:
            if c.chunk == chunk:
                return c
        raise KeyError(f"{self.name} has no client chunk-{chunk}")

    def lengths(self, client: ServeGenClient) -> LengthWindows:
        """The client's own length distributions, or the pool-wide ones if its file is absent."""
        if client.dataset_file is None:
            return self.pool_lengths
        if client.chunk not in self._lengths:
            self._lengths[client.chunk] = read_lengths(client.dataset_file)
        return self._lengths[client.chunk]

    @cached_property
    def pool_lengths(self) -> LengthWindows:
        """Request-weighted mixture, per 6-hour block, of every client that has a file."""
        own = [(c, self.lengths(c)) for c in self.clients if c.dataset_file is not None]
        if not own:
            raise _missing(f"any length file of pool {self.name}", self.directory)
        starts = own[0][1].block_start_s
        per_block = LENGTH_BLOCK_SECONDS // WINDOW_SECONDS
        inputs, outputs = [], []
        for b, s in enumerate(starts):
            weights = [
                float(c.rate[b * per_block : (b + 1) * per_block].sum() * WINDOW_SECONDS)
                for c, _ in own
            ]
            inputs.append(
                _mixture([(w, lw.input[b]) for w, (_, lw) in zip(weights, own, strict=True)])
            )
            outputs.append(
                _mixture([(w, lw.output[b]) for w, (_, lw) in zip(weights, own, strict=True)])
            )
            del s
        return LengthWindows(starts, tuple(inputs), tuple(outputs), source="pool")


def read_servegen(pool: str, path: Path | str | None = None) -> ServeGenPool:
    """Read the rate curves of every client of ``pool`` (``m-small`` or ``m-mid``)."""
    directory = _root(path) / "servegen" / "language" / pool
    curves = sorted(directory.glob("chunk-*-trace.csv")) if directory.is_dir() else []
    if not curves:
        raise _missing(f"ServeGen pool {pool!r} (chunk-<N>-trace.csv files)", directory)
    clients = []
    for f in curves:
        chunk = int(f.name.split("-")[1])
        ds = directory / f"chunk-{chunk}-dataset.json"
        # an empty file (m-small chunk-1) carries nothing: treat it as absent, like the README
        present = ds.is_file() and ds.stat().st_size > 0
        clients.append(read_client_curve(f, pool, chunk, ds if present else None))
    clients.sort(key=lambda c: c.chunk)
    return ServeGenPool(pool, directory, tuple(clients))


def read_servegen_all(path: Path | str | None = None) -> dict[str, ServeGenPool]:
    """Both pools, keyed by name."""
    return {p: read_servegen(p, path) for p in POOLS}


# ---------------------------------------------------------------- demand histories


def _resample(values: FloatArray, step_seconds: int) -> FloatArray:
    """A per-window (600 s) curve at ``step_seconds`` (a divisor or a multiple of 600)."""
    if WINDOW_SECONDS % step_seconds == 0:
        return np.repeat(values, WINDOW_SECONDS // step_seconds)
    if step_seconds % WINDOW_SECONDS == 0:
        k = step_seconds // WINDOW_SECONDS
        n = values.size // k * k
        out: FloatArray = values[:n].reshape(-1, k).mean(axis=1)
        return out
    raise ValueError(f"step {step_seconds}s must divide {WINDOW_SECONDS}s or be a multiple of it")


def window_token_means(pool: ServeGenPool, client: ServeGenClient) -> tuple[FloatArray, FloatArray]:
    """(E[input], E[output]) per 600 s window of ``client``. Empty blocks fall back to the
    pool-wide block, then to the client's (else the pool's) average over all blocks."""
    own = pool.lengths(client)
    mi, mo = own.means()
    if own.source == "client":
        pi, po = pool.pool_lengths.means()
        mi, mo = np.where(np.isfinite(mi), mi, pi), np.where(np.isfinite(mo), mo, po)
    for m in (mi, mo):
        if not np.isfinite(m).all():
            m[~np.isfinite(m)] = np.nanmean(m) if np.isfinite(m).any() else 0.0
    per_block = LENGTH_BLOCK_SECONDS // WINDOW_SECONDS
    block = np.minimum(np.arange(client.rate.size) // per_block, mi.size - 1)
    return mi[block], mo[block]


def _client_rates(
    pool: ServeGenPool, client: ServeGenClient, step_seconds: int, shift_seconds: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    mi, mo = window_token_means(pool, client)
    rate = client.rate
    if shift_seconds:
        if shift_seconds % WINDOW_SECONDS:
            raise ValueError(f"shift {shift_seconds}s must be a multiple of {WINDOW_SECONDS}s")
        n = shift_seconds // WINDOW_SECONDS
        rate, mi, mo = np.roll(rate, n), np.roll(mi, n), np.roll(mo, n)
    return (
        _resample(rate, step_seconds),
        _resample(rate * mi, step_seconds),
        _resample(rate * mo, step_seconds),
    )


def _history(
    key: FlowKey, step_seconds: int, start: float, arrays: Sequence[FloatArray]
) -> DemandHistory:
    req, pt, ot = arrays
    return DemandHistory(
        key=key,
        start=start,
        step_seconds=step_seconds,
        rates=DemandRates(
            requests_per_s=tuple(req.tolist()),
            prompt_tokens_per_s=tuple(pt.tolist()),
            output_tokens_per_s=tuple(ot.tolist()),
        ),
    )


def servegen_history(
    pool: ServeGenPool,
    client: ServeGenClient,
    step_seconds: int = WINDOW_SECONDS,
    key: FlowKey | None = None,
    start: float = 0.0,
    shift_seconds: int = 0,
) -> DemandHistory:
    """The client's 14 days as a :class:`DemandHistory` (rate x mean tokens, see module doc).

    ``step_seconds`` must divide 600 or be a multiple of it. ``shift_seconds`` (a multiple of
    600) rotates the curve later in time, e.g. by a home region's UTC offset. The default key
    is (model = pool, origin = ``global``, tier = ``chunk-<N>``).
    """
    key = key or FlowKey(model=pool.name, origin="global", tier=f"chunk-{client.chunk}")
    return _history(
        key, step_seconds, start, _client_rates(pool, client, step_seconds, shift_seconds)
    )


def servegen_flows(
    pools: Iterable[ServeGenPool],
    step_seconds: int = WINDOW_SECONDS,
    regions: Mapping[str, int] | None = None,
    tier: str = "interactive",
) -> list[DemandHistory]:
    """Clients aggregated into flows (model = pool, origin = region, one tier): client i of a
    pool goes to region i mod R, its clock shifted by that region's UTC offset (hours), and
    the flow's rates are the sums over its clients."""
    regs = (
        dict(regions) if regions is not None else {"us-east": -5, "eu-west": 1, "ap-northeast": 9}
    )
    names = list(regs)
    out: list[DemandHistory] = []
    for pool in pools:
        sums: dict[str, list[FloatArray]] = {}
        for i, c in enumerate(pool.clients):
            region = names[i % len(names)]
            arrays = list(_client_rates(pool, c, step_seconds, regs[region] * 3600))
            prev = sums.get(region)
            sums[region] = (
                arrays if prev is None else [a + b for a, b in zip(prev, arrays, strict=True)]
            )
        for region, arrays in sums.items():
            key = FlowKey(model=pool.name, origin=region, tier=tier)
            out.append(_history(key, step_seconds, 0.0, arrays))
    return out
