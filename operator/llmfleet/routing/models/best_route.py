r"""BEST-Route's (model, n samples) choice, on a declared sample set.

BEST-Route (Ding et al., ICML 2025, arXiv 2506.22716) routes each query to a model *and* a
number ``n`` of sampled answers, of which a reward model keeps the best (best-of-n): a
small model sampled a few times often matches a large one at a fraction of its cost. Its
cost counts the prompt once and all ``n`` outputs.

This needs several sampled answers per query and model, each with its quality and a reward
score: a :class:`SampleSet`. (RouteLLM's MMLU and GSM8K files have one answer per model and
query, so they cannot feed it.) :func:`best_of_n_options` turns a sample set into a
:class:`~llmfleet.routing.models.data.RoutingSet` whose "models" are the options
``<model>@<n>``, with, for query ``i``::

    quality[i, (m, n)] = q[i, m, j*],   j* = argmax_{j < n} reward[i, m, j]   (first on ties)
    cost[i, (m, n)]    = prompt_cost[i, m] + sum_{j < n} output_cost[i, m, j]

Any router of :mod:`llmfleet.routing.models.routers` then predicts each option's quality,
and the knob of :mod:`llmfleet.routing.models.policy` (calibrated the same way) picks the
option: that is the (model, n) choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llmfleet.routing.models.data import FloatArray, RoutingSet


@dataclass(frozen=True, eq=False)
class SampleSet:
    """``k`` sampled answers per query and model: ``quality`` and ``reward`` ``(n, M, k)``,
    ``prompt_cost`` ``(n, M)`` and ``output_cost`` ``(n, M, k)``."""

    prompts: tuple[str, ...]
    models: tuple[str, ...]
    quality: FloatArray
    reward: FloatArray
    prompt_cost: FloatArray
    output_cost: FloatArray

    def __post_init__(self) -> None:
        n, m = len(self.prompts), len(self.models)
        k = self.quality.shape[2] if self.quality.ndim == 3 else 0
        if k < 1:
            raise ValueError(
                f"quality must have shape (prompts, models, samples), got {self.quality.shape}"
            )
        for name, arr, shape in (
            ("quality", self.quality, (n, m, k)),
            ("reward", self.reward, (n, m, k)),
            ("output_cost", self.output_cost, (n, m, k)),
            ("prompt_cost", self.prompt_cost, (n, m)),
        ):
            if arr.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} must be finite")
        if np.any(self.prompt_cost < 0) or np.any(self.output_cost < 0):
            raise ValueError("costs must be >= 0")

    @property
    def samples(self) -> int:
        """Sampled answers per query and model."""
        return int(self.quality.shape[2])


def best_of_n_options(data: SampleSet, ns: Sequence[int] = (1, 2, 4)) -> RoutingSet:
    """Each ``(model, n)`` as an option column ``<model>@<n>`` (module docstring)."""
    if not ns or any(n < 1 or n > data.samples for n in ns):
        raise ValueError(f"each n must be in [1, {data.samples}], got {list(ns)}")
    rows = np.arange(len(data.prompts))
    names: list[str] = []
    quality: list[FloatArray] = []
    cost: list[FloatArray] = []
    for m, model in enumerate(data.models):
        for n in ns:
            best = np.argmax(data.reward[:, m, :n], axis=1)
            names.append(f"{model}@{n}")
            quality.append(data.quality[rows, m, best])
            cost.append(data.prompt_cost[:, m] + data.output_cost[:, m, :n].sum(axis=1))
    return RoutingSet.build(data.prompts, names, np.column_stack(quality), np.column_stack(cost))
