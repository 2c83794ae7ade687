"""Numeric views of one demand series at two resolutions (pure numpy, no I/O).

History arrives at its own step ``s_h`` (e.g. 60 s from Prometheus); the planner asks for
a step ``s = k * s_h``. The *fine* series is the history as observed; the *coarse* series
averages each block of ``k`` fine steps, aligned so that the last block ends where the
history ends (the oldest ``n_f mod k`` fine steps are dropped):

    coarse[i] = mean(fine[off + i*k : off + (i+1)*k]),   off = n_f mod k

Missing observations are NaN. A block whose steps are all NaN is NaN; otherwise the mean
skips NaNs. Seasonal periods are counted in coarse steps:

    P = round(86400 / s)   (one day),   W = 7 P   (one week).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DAY_SECONDS = 86_400


def as_array(values: tuple[float, ...] | list[float] | FloatArray) -> FloatArray:
    """A float64 copy of ``values``; negative values (invalid) are treated as missing."""
    a = np.array(values, dtype=np.float64)
    a[a < 0] = np.nan
    return a


def block_mean(fine: FloatArray, k: int) -> FloatArray:
    """Means of consecutive blocks of ``k`` steps, aligned to the end; all-NaN block -> NaN."""
    if k == 1:
        return fine.copy()
    nb = fine.size // k
    blocks = fine[fine.size - nb * k :].reshape(nb, k)
    ok = np.isfinite(blocks)
    counts = ok.sum(axis=1)
    sums = np.where(ok, blocks, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: FloatArray = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out


def fill_gaps(y: FloatArray) -> FloatArray:
    """NaNs replaced by linear interpolation between the nearest observed neighbours (the
    nearest observation at either end); an all-NaN or empty series becomes zeros."""
    ok = np.isfinite(y)
    if ok.all():
        return y
    if not ok.any():
        return np.zeros_like(y)
    idx = np.arange(y.size, dtype=np.float64)
    out: FloatArray = np.interp(idx, idx[ok], y[ok])
    return out


def last_observed(y: FloatArray) -> float:
    """The most recent finite value, 0 when there is none."""
    ok = np.flatnonzero(np.isfinite(y))
    return float(y[ok[-1]]) if ok.size else 0.0


def level(y: FloatArray, span: int) -> float:
    """Mean of the finite values among the last ``span`` steps (0 when none)."""
    tail = y[-span:] if span > 0 else y[:0]
    tail = tail[np.isfinite(tail)]
    return float(tail.mean()) if tail.size else 0.0


@dataclass(frozen=True)
class SeriesView:
    """A training prefix of one series at both resolutions.

    ``fine`` and ``coarse`` end at the same instant (the forecast origin).
    """

    fine: FloatArray
    coarse: FloatArray
    k: int
    """Fine steps per coarse step."""
    day: int
    """Coarse steps per day (P)."""
    fine_step_seconds: int

    @property
    def week(self) -> int:
        """Coarse steps per week (W = 7 P)."""
        return 7 * self.day

    def prefix(self, origin: int) -> SeriesView:
        """The view truncated to its first ``origin`` coarse steps (a backtest origin)."""
        cut_fine = self.fine.size - (self.coarse.size - origin) * self.k
        return SeriesView(
            fine=self.fine[:cut_fine],
            coarse=self.coarse[:origin],
            k=self.k,
            day=self.day,
            fine_step_seconds=self.fine_step_seconds,
        )


def view_of(fine: FloatArray, fine_step_seconds: int, k: int) -> SeriesView:
    """The two-resolution view of ``fine`` for a planning step of ``k`` fine steps."""
    coarse = block_mean(fine, k)
    kept = fine[fine.size - coarse.size * k :]
    day = max(1, round(DAY_SECONDS / (fine_step_seconds * k)))
    return SeriesView(fine=kept, coarse=coarse, k=k, day=day, fine_step_seconds=fine_step_seconds)
