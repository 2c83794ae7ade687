r"""Routers: each prompt's feature row -> a routing utility per model.

Every router returns a utility matrix ``U`` (prompts x models, higher = better answer
expected); :func:`llmfleet.routing.models.policy.route` turns it into a choice with one
run-time knob ``lambda >= 0``: ``m*(i) = argmax_m U[i, m] - lambda * c[i, m] / max_k c[i, k]``
(``lambda = 0``: best expected answer; ``lambda -> inf``: the cheapest model).

* :class:`RandomRouter` — the baseline every paper uses: ``U[i, r] = u_i ~ U(0, 1)`` for the
  reference model ``r``, 0 for the others, so the reference is kept iff
  ``u_i > lambda (1 - c_s / c_r)``: a random share of queries goes to the cheapest model.
* :class:`GoodEnoughRouter` — Hybrid LLM (Ding et al., ICLR 2024, arXiv 2404.14618): a
  probabilistic classifier of ``y_i = 1[q_small(i) >= q_large(i) - t]`` ("the small model is
  good enough", relaxation ``t >= 0``); ``U[i, small] = P(y_i = 1 | x_i)``, ``U[i, large] = 1``.
  Hybrid LLM's *probabilistic* router trains on the share of sampled answer pairs with
  ``y = 1``; the data here has one answer per model and query, so the label is that pair's
  (the *deterministic* router). Two models only (the cheapest and the reference by default).
* :class:`QualityRouter` — one probabilistic quality predictor per model (logistic regression
  on 0/1 quality, ridge regression otherwise): ``U[i, m] = E[q_m | x_i]``. Any number of
  models; with two it ranks queries by the predicted gap ``E[q_r - q_s | x]``.
* :class:`BoostedRouter` — one gradient-boosted regression-tree model per model
  (scikit-learn's histogram GBDT, squared loss, so ``U[i, m]`` estimates ``E[q_m | x_i]``
  like :class:`QualityRouter`) on dense features, meant for
  :class:`~llmfleet.routing.models.features.DifficultyFeaturiser`'s hand-made difficulty
  signals (prompt length, how many numbers, ...), whose effect is monotone but not linear;
  shallow trees (``leaves`` leaves, at least ``min_leaf`` prompts each), ``rounds`` rounds at
  learning rate ``rate``, a fixed seed: deterministic.
* :class:`BlendRouter` — the mean of the two estimates of ``E[q_m | x]`` above: the text
  one (:class:`QualityRouter` on the first ``text_columns`` columns, TF-IDF) and the
  difficulty one (:class:`BoostedRouter` on the rest); what each misses the other may see.
* :class:`ClusterRouter` — Universal Model Routing / UniRoute (Jitkrittum et al., arXiv
  2502.08773): prompts are clustered (k-means on L2-normalised, SVD-reduced features); each
  model is the vector of its mean quality (one minus its error rate) on the clusters,
  smoothed to its overall mean with ``a`` pseudo-prompts:
  ``Q[m, k] = (sum_{i in k} q[i, m] + a * qbar_m) / (n_k + a)``; ``U[i, m] = Q[m, k(i)]``.
  :meth:`ClusterRouter.add_model` adds a model from its quality on a small representative set
  (its prompts' clusters give its vector): nothing is refitted.

Features are a :data:`~llmfleet.routing.models.features.FeatureMatrix`. Routers are fitted on
a training set and know nothing of thresholds: calibration is the policy's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge

from llmfleet.routing.models.data import FloatArray, IntArray
from llmfleet.routing.models.features import FeatureMatrix, dense


class Router(Protocol):
    """Fitted on features and quality/cost of a training set; predicts a utility matrix."""

    name: str

    def fit(self, x: FeatureMatrix, quality: FloatArray, cost: FloatArray) -> Router: ...

    def utility(self, x: FeatureMatrix) -> FloatArray: ...


def _reference(quality: FloatArray) -> int:
    return int(np.argmax(quality.mean(axis=0)))


def _cheapest(cost: FloatArray) -> int:
    return int(np.argmin(cost.mean(axis=0)))


def _n_rows(x: FeatureMatrix) -> int:
    return int(x.shape[0])


def _is_binary(values: FloatArray) -> bool:
    return bool(np.all((values == 0.0) | (values == 1.0)))


def _probability_of_one(x: FeatureMatrix, target: FloatArray, c: float) -> _Predictor:
    """A predictor of ``P(target = 1 | x)`` (logistic regression; a constant if one class)."""
    return _Predictor.fit(x, target, c, binary=True)


class _Predictor:
    """``E[target | x]``: logistic regression (0/1 target) or ridge, or a constant."""

    def __init__(self, model: object | None, constant: float, binary: bool) -> None:
        self._model = model
        self._constant = constant
        self._binary = binary

    @staticmethod
    def fit(x: FeatureMatrix, target: FloatArray, c: float, binary: bool) -> _Predictor:
        mean = float(target.mean()) if target.size else 0.0
        if target.size == 0 or np.all(target == target[0]):
            return _Predictor(None, mean, binary)
        if binary:
            lr = LogisticRegression(C=c, max_iter=1000, solver="liblinear")
            lr.fit(x, target.astype(np.int64))
            return _Predictor(lr, mean, binary)
        ridge = Ridge(alpha=1.0 / c)
        ridge.fit(x, target)
        return _Predictor(ridge, mean, binary)

    def predict(self, x: FeatureMatrix) -> FloatArray:
        if self._model is None:
            return np.full(_n_rows(x), self._constant, dtype=np.float64)
        if self._binary:
            proba = np.asarray(self._model.predict_proba(x), dtype=np.float64)  # type: ignore[attr-defined]
            return proba[:, 1]
        return np.asarray(self._model.predict(x), dtype=np.float64)  # type: ignore[attr-defined]


class RandomRouter:
    """Random share to the cheapest model: ``U[i, r] = u_i``, 0 elsewhere (module docstring)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._reference = 0
        self._models = 2

    def fit(self, x: FeatureMatrix, quality: FloatArray, cost: FloatArray) -> RandomRouter:
        self._reference = _reference(quality)
        self._models = quality.shape[1]
        return self

    def utility(self, x: FeatureMatrix) -> FloatArray:
        n = _n_rows(x)
        u = np.zeros((n, self._models), dtype=np.float64)
        u[:, self._reference] = np.random.default_rng(self.seed).random(n)
        return u


class GoodEnoughRouter:
    """Hybrid LLM's router: ``P(q_small >= q_large - t | x)`` (module docstring).

    ``small``/``large`` are model indices (default: the cheapest and the reference of the
    training set); other models get utility ``-inf`` (never chosen)."""

    name = "hybrid-llm"

    def __init__(
        self, c: float = 0.3, relaxation: float = 0.0, small: int | None = None,
        large: int | None = None,
    ) -> None:  # fmt: skip
        if relaxation < 0:
            raise ValueError(f"relaxation must be >= 0, got {relaxation}")
        self.c = c
        self.relaxation = relaxation
        self.small = small
        self.large = large
        self._pair = (0, 1)
        self._models = 2
        self._clf: _Predictor | None = None

    def fit(self, x: FeatureMatrix, quality: FloatArray, cost: FloatArray) -> GoodEnoughRouter:
        small = _cheapest(cost) if self.small is None else self.small
        large = _reference(quality) if self.large is None else self.large
        if small == large:
            raise ValueError("the small and the large model must differ")
        self._pair = (small, large)
        self._models = quality.shape[1]
        good = (quality[:, small] >= quality[:, large] - self.relaxation).astype(np.float64)
        self._clf = _probability_of_one(x, good, self.c)
        return self

    def utility(self, x: FeatureMatrix) -> FloatArray:
        if self._clf is None:
            raise RuntimeError("fit the router first")
        small, large = self._pair
        u = np.full((_n_rows(x), self._models), -np.inf, dtype=np.float64)
        u[:, small] = self._clf.predict(x)
        u[:, large] = 1.0
        return u


class QualityRouter:
    """``U[i, m] = E[q_m | x_i]`` from one predictor per model (module docstring)."""

    name = "quality"

    def __init__(self, c: float = 0.3) -> None:
        self.c = c
        self._predictors: list[_Predictor] = []

    def fit(self, x: FeatureMatrix, quality: FloatArray, cost: FloatArray) -> QualityRouter:
        self._predictors = [
            _Predictor.fit(x, quality[:, m], self.c, binary=_is_binary(quality[:, m]))
            for m in range(quality.shape[1])
        ]
        return self

    def utility(self, x: FeatureMatrix) -> FloatArray:
        if not self._predictors:
            raise RuntimeError("fit the router first")
        return np.column_stack([p.predict(x) for p in self._predictors]).astype(np.float64)


class BoostedRouter:
    """``U[i, m] = E[q_m | x_i]`` from gradient-boosted trees per model (module docstring)."""

    name = "boosted"

    def __init__(
        self, rounds: int = 100, rate: float = 0.05, leaves: int = 15, min_leaf: int = 40,
        seed: int = 0,
    ) -> None:  # fmt: skip
        if rounds < 1 or not 0 < rate <= 1 or leaves < 2 or min_leaf < 1:
            raise ValueError(
                f"need rounds >= 1, 0 < rate <= 1, leaves >= 2, min_leaf >= 1; got "
                f"{rounds}, {rate}, {leaves}, {min_leaf}"
            )
        self.rounds = rounds
        self.rate = rate
        self.leaves = leaves
        self.min_leaf = min_leaf
        self.seed = seed
        self._models: list[HistGradientBoostingRegressor | float] = []

    def fit(self, x: FeatureMatrix, quality: FloatArray, cost: FloatArray) -> BoostedRouter:
        z = dense(x)
        self._models = []
        for m in range(quality.shape[1]):
            target = quality[:, m]
            if target.size == 0 or np.all(target == target[0]):
                self._models.append(float(target.mean()) if target.size else 0.0)
                continue
            gbdt = HistGradientBoostingRegressor(
                max_iter=self.rounds,
                learning_rate=self.rate,
                max_leaf_nodes=self.leaves,
                min_samples_leaf=min(self.min_leaf, max(1, target.size // 4)),
                early_stopping=False,
                random_state=self.seed,
            )
            gbdt.fit(z, target)
            self._models.append(gbdt)
        return self

    def utility(self, x: FeatureMatrix) -> FloatArray:
        if not self._models:
            raise RuntimeError("fit the router first")
        z = dense(x)
        cols = [
            np.full(z.shape[0], m, dtype=np.float64)
            if isinstance(m, float)
            else np.asarray(m.predict(z), dtype=np.float64)
            for m in self._models
        ]
        return np.column_stack(cols).astype(np.float64)


class BlendRouter:
    """The mean utility of a :class:`QualityRouter` on the first ``text_columns`` columns
    and a :class:`BoostedRouter` on the others (module docstring)."""

    name = "blend"

    def __init__(self, text_columns: int, c: float = 0.3, seed: int = 0) -> None:
        if text_columns < 1:
            raise ValueError(f"text_columns must be >= 1, got {text_columns}")
        self.text_columns = text_columns
        self._text = QualityRouter(c)
        self._trees = BoostedRouter(seed=seed)

    def _parts(self, x: FeatureMatrix) -> tuple[FeatureMatrix, FeatureMatrix]:
        if int(x.shape[1]) <= self.text_columns:
            raise ValueError(
                f"features need more than text_columns={self.text_columns} columns, got {x.shape[1]}"
            )
        if sp.issparse(x):
            csc = sp.csc_matrix(x)
            return csc[:, : self.text_columns].tocsr(), dense(csc[:, self.text_columns :].tocsr())
        z = dense(x)
        return z[:, : self.text_columns], z[:, self.text_columns :]

    def fit(self, x: FeatureMatrix, quality: FloatArray, cost: FloatArray) -> BlendRouter:
        text, rest = self._parts(x)
        self._text.fit(text, quality, cost)
        self._trees.fit(rest, quality, cost)
        return self

    def utility(self, x: FeatureMatrix) -> FloatArray:
        text, rest = self._parts(x)
        return np.asarray(
            0.5 * (self._text.utility(text) + self._trees.utility(rest)), dtype=np.float64
        )


class ClusterRouter:
    """UniRoute's cluster-error router (module docstring).

    ``clusters`` k-means clusters of the features reduced to ``dims`` dimensions by
    truncated SVD (sparse input) and L2-normalised; ``prior`` pseudo-prompts pull each
    cluster's mean quality to the model's overall mean."""

    name = "uniroute"

    def __init__(
        self, clusters: int = 40, dims: int = 64, prior: float = 5.0, seed: int = 0
    ) -> None:
        if clusters < 1 or dims < 1 or prior < 0:
            raise ValueError("clusters and dims must be >= 1 and prior >= 0")
        self.clusters = clusters
        self.dims = dims
        self.prior = prior
        self.seed = seed
        self._svd: TruncatedSVD | None = None
        self._kmeans: KMeans | None = None
        self.models: list[str] = []
        #: ``(models, clusters)`` smoothed mean quality
        self.table: FloatArray = np.zeros((0, 0), dtype=np.float64)

    def _embed(self, x: FeatureMatrix) -> FloatArray:
        if self._svd is not None:
            z = np.asarray(self._svd.transform(x), dtype=np.float64)
        else:
            z = dense(x)
        norm = np.linalg.norm(z, axis=1, keepdims=True)
        return z / np.where(norm > 0, norm, 1.0)

    def assign(self, x: FeatureMatrix) -> IntArray:
        """Each row's cluster."""
        if self._kmeans is None:
            raise RuntimeError("fit the router first")
        return np.asarray(self._kmeans.predict(self._embed(x)), dtype=np.int64)

    def fit(self, x: FeatureMatrix, quality: FloatArray, cost: FloatArray) -> ClusterRouter:
        """Clusters from ``x``; every model's vector from ``quality`` on the same prompts."""
        n_features = int(x.shape[1])
        self._svd = None
        if sp.issparse(x) or n_features > self.dims:
            dims = min(self.dims, n_features - 1, _n_rows(x) - 1)
            if dims >= 1:
                self._svd = TruncatedSVD(n_components=dims, random_state=self.seed)
                self._svd.fit(x)
        k = min(self.clusters, _n_rows(x))
        self._kmeans = KMeans(n_clusters=k, n_init=2, random_state=self.seed)
        self._kmeans.fit(self._embed(x))
        self.models = [str(m) for m in range(quality.shape[1])]
        self.table = np.zeros((0, k), dtype=np.float64)
        assigned = self.assign(x)
        self.table = np.vstack(
            [self._vector(assigned, quality[:, m]) for m in range(quality.shape[1])]
        )
        return self

    def _vector(self, assigned: IntArray, quality: FloatArray) -> FloatArray:
        k = self.table.shape[1]
        total = np.bincount(assigned, weights=quality, minlength=k)
        count = np.bincount(assigned, minlength=k).astype(np.float64)
        mean = float(quality.mean()) if quality.size else 0.0
        return (
            (total + self.prior * mean) / (count + self.prior)
            if self.prior > 0
            else np.divide(total, count, out=np.full(k, mean), where=count > 0)
        )

    def add_model(self, name: str, x: FeatureMatrix, quality: Sequence[float] | FloatArray) -> int:
        """Add a model from its quality on a few representative prompts ``x``; returns its
        column. The clusters and the other models' vectors are left as they are."""
        q = np.asarray(quality, dtype=np.float64)
        if q.shape != (_n_rows(x),):
            raise ValueError(
                f"quality must have one value per prompt ({_n_rows(x)}), got {q.shape}"
            )
        if name in self.models:
            raise ValueError(f"model {name!r} is already routed")
        self.table = np.vstack([self.table, self._vector(self.assign(x), q)])
        self.models.append(name)
        return len(self.models) - 1

    def utility(self, x: FeatureMatrix) -> FloatArray:
        return np.asarray(self.table[:, self.assign(x)].T, dtype=np.float64)


def make_router(name: str, seed: int = 0, text_columns: int | None = None) -> Router:
    """A router by name: ``random``, ``hybrid-llm``, ``quality``, ``boosted``, ``blend``
    (needs ``text_columns``) or ``uniroute``."""
    if name == "random":
        return RandomRouter(seed)
    if name == "hybrid-llm":
        return GoodEnoughRouter()
    if name == "quality":
        return QualityRouter()
    if name == "boosted":
        return BoostedRouter(seed=seed)
    if name == "blend":
        if text_columns is None:
            raise ValueError("router 'blend' needs text_columns (the TF-IDF block's width)")
        return BlendRouter(text_columns, seed=seed)
    if name == "uniroute":
        return ClusterRouter(seed=seed)
    raise ValueError(f"unknown router {name!r} ({', '.join(ROUTERS)})")


ROUTERS = ("random", "hybrid-llm", "quality", "boosted", "blend", "uniroute")
