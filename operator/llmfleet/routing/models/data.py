"""The typed input of quality-aware routing: prompts, and each model's quality and cost on them.

A :class:`RoutingSet` holds ``n`` prompts and ``M >= 2`` models: ``quality[i, m]`` is how good
model ``m``'s answer to prompt ``i`` was (higher is better: 0/1 correctness, or a score) and
``cost[i, m] >= 0`` what it cost (USD, or any unit shared by all models). Two models are
singled out:

* the **reference** ``r = argmax_m mean_i quality[i, m]`` (the large model every query would
  go to without a router; quality drops and cost savings are measured against it);
* the **cheapest** ``s = argmin_m mean_i cost[i, m]`` (what a router sends queries to when it
  saves the most).

The module is pure: the CSV readers live in ``llmfleet_bench.routing``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class RoutingSet:
    """Prompts with each model's quality and cost on them (see the module docstring)."""

    prompts: tuple[str, ...]
    models: tuple[str, ...]
    quality: FloatArray
    cost: FloatArray

    def __post_init__(self) -> None:
        n, m = len(self.prompts), len(self.models)
        if m < 2:
            raise ValueError(f"routing needs at least 2 models, got {m}")
        if len(set(self.models)) != m:
            raise ValueError(f"model names must be unique, got {list(self.models)}")
        for name, arr in (("quality", self.quality), ("cost", self.cost)):
            if arr.shape != (n, m):
                raise ValueError(
                    f"{name} must have shape {(n, m)} (prompts x models), got {arr.shape}"
                )
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} must be finite")
        if np.any(self.cost < 0):
            raise ValueError("cost must be >= 0")

    @staticmethod
    def build(
        prompts: Sequence[str],
        models: Sequence[str],
        quality: npt.ArrayLike,
        cost: npt.ArrayLike,
    ) -> RoutingSet:
        """A set from any array-likes (copied to float64)."""
        return RoutingSet(
            tuple(prompts),
            tuple(models),
            np.array(quality, dtype=np.float64),
            np.array(cost, dtype=np.float64),
        )

    @property
    def n(self) -> int:
        """Number of prompts."""
        return len(self.prompts)

    @property
    def reference(self) -> int:
        """Index of the model with the best mean quality (ties: the first)."""
        return int(np.argmax(self.quality.mean(axis=0)))

    @property
    def cheapest(self) -> int:
        """Index of the model with the lowest mean cost (ties: the first)."""
        return int(np.argmin(self.cost.mean(axis=0)))

    def subset(self, index: npt.ArrayLike) -> RoutingSet:
        """The prompts at ``index`` (in that order)."""
        idx = np.asarray(index, dtype=np.int64)
        return RoutingSet(
            tuple(self.prompts[int(i)] for i in idx),
            self.models,
            self.quality[idx],
            self.cost[idx],
        )


@dataclass(frozen=True, eq=False)
class Split:
    """Indices of one seeded split: ``train`` (fit the router), ``calibrate`` (set its
    threshold) and ``test`` (held out, measured once)."""

    train: IntArray
    calibrate: IntArray
    test: IntArray


def seeded_split(n: int, seed: int, test: float = 0.3, calibrate: float = 0.2) -> Split:
    """A random partition of ``range(n)`` into train / calibrate / test shares.

    ``test`` and ``calibrate`` are shares of ``n`` (rounded); train gets the rest, at
    least 1 prompt each."""
    if not (0 < test < 1 and 0 < calibrate < 1 and test + calibrate < 1):
        raise ValueError(f"shares must be in (0, 1) and sum below 1, got {test}, {calibrate}")
    if n < 3:
        raise ValueError(f"a split needs at least 3 prompts, got {n}")
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    n_test = max(1, round(n * test))
    n_cal = max(1, round(n * calibrate))
    n_test = min(n_test, n - 2)
    n_cal = min(n_cal, n - n_test - 1)
    return Split(
        train=np.sort(perm[n_test + n_cal :]),
        calibrate=np.sort(perm[n_test : n_test + n_cal]),
        test=np.sort(perm[:n_test]),
    )


def kfold(n: int, folds: int, seed: int) -> list[IntArray]:
    """``folds`` disjoint random index sets covering ``range(n)`` (sizes differ by <= 1)."""
    if not 2 <= folds <= n:
        raise ValueError(f"folds must be in [2, {n}], got {folds}")
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return [np.sort(part) for part in np.array_split(perm, folds)]
