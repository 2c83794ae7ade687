r"""A fitted router as plain arrays, and the decision for one request: what the router
service runs on the request path (pure: dicts and arrays in, a choice out, no I/O).

scikit-learn's per-call overhead (input validation, a sparse matrix per prompt) costs more
than the whole decision, so a request is featurised and scored by hand, with results equal
to the fitted scikit-learn objects (``tests/unit/routing/test_serving.py`` checks the
decisions are identical):

* :class:`FastHashing` — :class:`~llmfleet.routing.models.features.HashingFeaturiser`'s
  features of one prompt: lower-cased, tokens ``(?u)\b\w\w+\b``, word 1- and 2-grams,
  each hashed with MurmurHash3 (seed 0, signed 32 bit) to ``abs(h) mod 2**bits``, counts
  L2-normalised; as the (sorted) non-zero indices and their values;
* a :class:`Member` per fitted router of the cross-fit ensemble: :class:`LinearMember`
  (one head per candidate: ``sigmoid(w.x + b)`` of a logistic regression, ``w.x + b`` of a
  ridge, a constant, or *never*), :class:`ClusterMember` (UniRoute: SVD projection,
  L2-normalised, nearest k-means centre, that cluster's column of the quality table),
  :class:`RandomMember` (a uniform draw for the reference, from a hash of the prompt so the
  same prompt gets the same model), :class:`BlendMember` (``blend``: the mean of a linear
  member and a :class:`TreeMember`, boosted regression trees on the prompt's difficulty
  features packed into arrays; a tier walks all its members' trees at once); the utility is
  the members' mean;
* :class:`TierRouter` — the tier's candidates, each cost estimate ``a_m + b_m * chars``
  (:class:`~llmfleet.routing.models.policy.LengthCost`), the calibrated knob ``lambda`` and
  cost scale; :meth:`TierRouter.decide` is ``argmax_m U_m - (lambda + 1e-9) c~_m`` as
  :func:`~llmfleet.routing.models.policy.route` computes it, over the candidates the tenant
  may use (every request to the reference when ``lambda`` is unset).

:func:`compile_members` turns fitted routers into members; :func:`fit_tier` fits, calibrates
and compiles a tier's router from a :class:`~llmfleet.routing.models.data.RoutingSet`;
:func:`members_to_arrays` / :func:`members_from_arrays` are the artefact's array form (an
``.npz`` written and read by the I/O shell); :func:`parse_config` reads the router service's
configuration (the ConfigMap's JSON, :data:`CONFIG_API_VERSION`) with errors naming the key.

**The planner's shares.** :class:`RouterShares` is what the planner needs of the routers: per
routed tier (:class:`TierShares`), the calibrated fraction of the tier's requests, prompt
tokens and output tokens each option (:class:`RouteShare`: a model, and ``n`` samples for
best-of-n) answers. :func:`calibrated_shares` counts them from a fitted tier's out-of-fold
decisions at its calibrated knob (:func:`fit_tier_shares` fits and counts: the share of MMLU
prompts the router sends to the small model at a 1-point drop), :func:`router_shares` from a
served router's decisions on sample prompts; :func:`shares_document` / :func:`parse_shares`
are their JSON (:data:`SHARES_API_VERSION`). ``llmfleet.cycle.routing`` applies them to
the forecasts.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.utils import murmurhash3_32

from llmfleet.routing.models.crossfit import cross_fit
from llmfleet.routing.models.data import FloatArray, IntArray, RoutingSet
from llmfleet.routing.models.features import (
    DIFFICULTY_FEATURES,
    DifficultyFeaturiser,
    HashingFeaturiser,
    difficulty_row,
)
from llmfleet.routing.models.policy import LengthCost, calibrate
from llmfleet.routing.models.routers import (
    BlendRouter,
    ClusterRouter,
    GoodEnoughRouter,
    QualityRouter,
    RandomRouter,
    Router,
    _Predictor,
)

CONFIG_API_VERSION = "llmfleet.dev/router/v1"
#: The API's router kinds and the core's router each compiles from.
KINDS = ("random", "good-enough", "quality", "cluster", "blend")
_TIE = 1e-9
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_CACHE_LIMIT = 200_000


class ConfigError(ValueError):
    """A router configuration that does not follow its schema (the message names the key)."""


class FastHashing:
    """One prompt's hashed word 1-2-grams, equal to ``HashingFeaturiser(bits)`` (docstring).

    Keeps a bounded cache of n-gram -> column (prompts repeat their words)."""

    def __init__(self, bits: int = 18) -> None:
        if not 1 <= bits <= 24:
            raise ValueError(f"bits must be in [1, 24], got {bits}")
        self.bits = bits
        self.n_features = 2**bits
        self._cache: dict[str, int] = {}

    def _column(self, gram: str) -> int:
        col = self._cache.get(gram)
        if col is None:
            h = int(murmurhash3_32(gram, seed=0))
            n = self.n_features
            col = (2147483647 - (n - 1)) % n if h == -2147483648 else abs(h) % n
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[gram] = col
        return col

    def features(self, text: str) -> tuple[IntArray, FloatArray]:
        """Sorted non-zero columns and their L2-normalised counts."""
        tokens = _TOKEN.findall(text.lower())
        counts: dict[int, int] = {}
        column = self._column
        for t in tokens:
            c = column(t)
            counts[c] = counts.get(c, 0) + 1
        for a, b in itertools.pairwise(tokens):
            c = column(f"{a} {b}")
            counts[c] = counts.get(c, 0) + 1
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        val = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        order = np.argsort(idx)
        idx, val = idx[order], val[order]
        return idx, val / math.sqrt(float(val @ val))


# --------------------------------------------------------------------------- members

HeadLink = Literal["logistic", "identity", "constant", "never"]


@dataclass(frozen=True, eq=False)
class Head:
    """One candidate's utility in a linear member: ``sigmoid(w.x + b)`` (``logistic``),
    ``w.x + b`` (``identity``), ``value`` (``constant``) or ``-inf`` (``never``)."""

    link: HeadLink
    weights: FloatArray = field(default_factory=lambda: np.zeros(0))
    intercept: float = 0.0
    value: float = 0.0

    def utility(self, idx: IntArray, val: FloatArray) -> float:
        if self.link == "never":
            return -math.inf
        if self.link == "constant":
            return self.value
        z = float(self.weights[idx] @ val) + self.intercept if idx.size else self.intercept
        if self.link == "identity":
            return z
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


@dataclass(frozen=True, eq=False)
class LinearMember:
    """A good-enough or quality router: one :class:`Head` per candidate."""

    heads: tuple[Head, ...]

    def utility(self, idx: IntArray, val: FloatArray, text: str) -> FloatArray:
        return np.array([h.utility(idx, val) for h in self.heads], dtype=np.float64)


@dataclass(frozen=True, eq=False)
class ClusterMember:
    """UniRoute: ``components`` (dims x features, or empty: no projection), ``centers``
    (clusters x dims), ``table`` (candidates x clusters)."""

    components: FloatArray
    centers: FloatArray
    table: FloatArray

    def cluster(self, idx: IntArray, val: FloatArray) -> int:
        if self.components.size:
            z = self.components[:, idx] @ val if idx.size else np.zeros(self.components.shape[0])
        else:
            z = np.zeros(self.centers.shape[1])
            z[idx] = val
        norm = float(np.linalg.norm(z))
        if norm > 0:
            z = z / norm
        d = ((self.centers - z[None, :]) ** 2).sum(axis=1)
        return int(np.argmin(d))

    def utility(self, idx: IntArray, val: FloatArray, text: str) -> FloatArray:
        return np.asarray(self.table[:, self.cluster(idx, val)], dtype=np.float64)


@dataclass(frozen=True, eq=False)
class RandomMember:
    """The random baseline: ``U[reference] = u(prompt)`` uniform in [0, 1), 0 elsewhere."""

    reference: int
    candidates: int

    def utility(self, idx: IntArray, val: FloatArray, text: str) -> FloatArray:
        u = np.zeros(self.candidates, dtype=np.float64)
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
        u[self.reference] = int.from_bytes(digest, "big") / 2.0**64
        return u


@dataclass(frozen=True, eq=False)
class TreeMember:
    """Gradient-boosted regression trees per candidate on the prompt's difficulty features
    (:data:`~llmfleet.routing.models.features.DIFFICULTY_FEATURES`), every tree of every
    candidate packed in one set of ``[trees, nodes]`` arrays so that one walk evaluates all
    of them: tree ``t`` adds its leaf ``value`` to candidate ``group[t]``, on top of that
    candidate's ``baseline``. A split sends ``x <= threshold`` left, a missing value where
    ``missing_left`` says (scikit-learn's numeric splits)."""

    feature: IntArray
    threshold: FloatArray
    left: IntArray
    right: IntArray
    leaf: npt.NDArray[np.bool_]
    missing_left: npt.NDArray[np.bool_]
    value: FloatArray
    group: IntArray
    baseline: FloatArray
    depth: int
    _flat: dict[str, Any] = field(init=False, repr=False)
    _base: IntArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # flat views: node ``n`` of tree ``t`` at ``t * nodes + n`` (one gather a level)
        trees, nodes = self.feature.shape
        flat = {name: np.ascontiguousarray(getattr(self, name)).reshape(-1) for name in
                ("feature", "threshold", "left", "right", "leaf", "missing_left", "value")}
        object.__setattr__(self, "_flat", flat)
        object.__setattr__(self, "_base", np.arange(trees, dtype=np.int64) * nodes)

    def predict(self, z: FloatArray) -> FloatArray:
        """Each candidate's prediction for the difficulty row ``z``."""
        out = np.array(self.baseline, dtype=np.float64)
        if not self.group.size:
            return out
        f, base = self._flat, self._base
        pos = base.copy()
        for _ in range(self.depth):
            at_leaf = f["leaf"][pos]
            if at_leaf.all():
                break
            x = z[f["feature"][pos]]
            go_left = x <= f["threshold"][pos]
            missing = np.isnan(x)
            if missing.any():
                go_left = np.where(missing, f["missing_left"][pos], go_left)
            step = np.where(go_left, f["left"][pos], f["right"][pos])
            pos = np.where(at_leaf, pos, base + step)
        out += np.bincount(self.group, weights=f["value"][pos], minlength=out.size)
        return out

    @classmethod
    def mean_of(cls, members: Sequence[TreeMember]) -> TreeMember:
        """One forest whose prediction is the mean of ``members``' (all trees walked at
        once: what a tier of several fold routers evaluates per request)."""
        k = len(members)
        size = max(m.feature.shape[1] for m in members)

        def cat(name: str) -> Any:
            parts = []
            for m in members:
                a = getattr(m, name)
                pad = np.zeros((a.shape[0], size - a.shape[1]), dtype=a.dtype)
                if name == "leaf":
                    pad[:] = True
                parts.append(np.hstack([a, pad]))
            return np.vstack(parts)

        return cls(
            feature=cat("feature"), threshold=cat("threshold"), left=cat("left"),
            right=cat("right"), leaf=cat("leaf"), missing_left=cat("missing_left"),
            value=cat("value") / k, group=np.concatenate([m.group for m in members]),
            baseline=np.mean([m.baseline for m in members], axis=0),
            depth=max(m.depth for m in members),
        )  # fmt: skip

    @classmethod
    def of(cls, models: Sequence[Any]) -> TreeMember:
        """From a :class:`~llmfleet.routing.models.routers.BoostedRouter`'s per-candidate
        models (a fitted ``HistGradientBoostingRegressor``, or a constant)."""
        trees: list[Any] = []
        group: list[int] = []
        baseline = np.zeros(len(models), dtype=np.float64)
        for j, m in enumerate(models):
            if isinstance(m, float):
                baseline[j] = m
                continue
            baseline[j] = float(np.asarray(m._baseline_prediction).reshape(-1)[0])
            for stage in m._predictors:
                for tree in stage:
                    if np.any(tree.nodes["is_categorical"]):
                        raise ValueError("categorical splits are not supported")
                    trees.append(tree.nodes)
                    group.append(j)
        size = max((len(t) for t in trees), default=1)

        def packed(field: str, dtype: Any) -> Any:
            out = np.zeros((len(trees), size), dtype=dtype)
            for i, t in enumerate(trees):
                out[i, : len(t)] = t[field]
            return out

        leaf = packed("is_leaf", np.bool_)
        leaf[:, :] |= np.arange(size)[None, :] >= np.array([len(t) for t in trees] or [0])[:, None]
        return cls(
            feature=packed("feature_idx", np.int64), threshold=packed("num_threshold", np.float64),
            left=packed("left", np.int64), right=packed("right", np.int64), leaf=leaf,
            missing_left=packed("missing_go_to_left", np.bool_),
            value=packed("value", np.float64), group=np.asarray(group, dtype=np.int64),
            baseline=baseline,
            depth=int(max((int(t["depth"].max()) for t in trees), default=0)) + 1,
        )  # fmt: skip


@dataclass(frozen=True, eq=False)
class BlendMember:
    """The ``blend`` router: the mean of a :class:`LinearMember` on the hashed text and a
    :class:`TreeMember` on the difficulty features."""

    linear: LinearMember
    trees: TreeMember

    def utility(self, idx: IntArray, val: FloatArray, text: str) -> FloatArray:
        return self.blend(idx, val, difficulty(text))

    def blend(self, idx: IntArray, val: FloatArray, z: FloatArray) -> FloatArray:
        return np.asarray(0.5 * (self.linear.utility(idx, val, "") + self.trees.predict(z)),
                          dtype=np.float64)  # fmt: skip


def difficulty(text: str) -> FloatArray:
    """One prompt's difficulty row (as :class:`DifficultyFeaturiser` computes it)."""
    return np.asarray(difficulty_row(text), dtype=np.float64).reshape(len(DIFFICULTY_FEATURES))


Member: TypeAlias = LinearMember | ClusterMember | RandomMember | BlendMember


def _head(p: _Predictor, features: int) -> Head:
    model: Any = p._model
    if model is None:
        return Head("constant", value=p._constant)
    coef = np.asarray(model.coef_, dtype=np.float64).reshape(-1)
    intercept = float(np.asarray(model.intercept_, dtype=np.float64).reshape(-1)[0])
    if coef.size != features:
        raise ValueError(f"a head has {coef.size} weights, the featuriser {features} columns")
    return Head("logistic" if p._binary else "identity", coef, intercept)


def compile_members(routers: Sequence[Router], features: int) -> tuple[Member, ...]:
    """Fitted routers (a cross-fit's fold routers) as members, on ``features`` columns."""
    out: list[Member] = []
    for r in routers:
        if isinstance(r, QualityRouter):
            out.append(LinearMember(tuple(_head(p, features) for p in r._predictors)))
        elif isinstance(r, GoodEnoughRouter):
            if r._clf is None:
                raise ValueError("fit the router first")
            small, large = r._pair
            heads = [Head("never")] * r._models
            heads[small] = _head(r._clf, features)
            heads[large] = Head("constant", value=1.0)
            out.append(LinearMember(tuple(heads)))
        elif isinstance(r, ClusterRouter):
            if r._kmeans is None:
                raise ValueError("fit the router first")
            comps = (
                np.asarray(r._svd.components_, dtype=np.float64)
                if r._svd is not None
                else np.zeros((0, 0))
            )
            out.append(ClusterMember(comps, np.asarray(r._kmeans.cluster_centers_), r.table))
        elif isinstance(r, RandomRouter):
            out.append(RandomMember(r._reference, r._models))
        elif isinstance(r, BlendRouter):
            if r.text_columns != features:
                raise ValueError(f"a blend router's text block has {r.text_columns} columns, "
                                 f"the featuriser {features}")  # fmt: skip
            text = LinearMember(tuple(_head(p, features) for p in r._text._predictors))
            out.append(BlendMember(text, TreeMember.of(r._trees._models)))
        else:
            raise ValueError(f"cannot compile router {type(r).__name__}")
    return tuple(out)


_TREE_ARRAYS = ("feature", "threshold", "left", "right", "leaf", "missing_left", "value",
                "group", "baseline")


def members_to_arrays(members: Sequence[Member]) -> dict[str, FloatArray]:
    """The members as named arrays (an ``.npz`` artefact's content)."""
    out: dict[str, FloatArray] = {"members": np.array([len(members)], dtype=np.float64)}
    links = {"logistic": 0.0, "identity": 1.0, "constant": 2.0, "never": 3.0}

    def linear(m: LinearMember, p: str) -> None:
        out[p + "links"] = np.array([links[h.link] for h in m.heads])
        out[p + "scalars"] = np.array([[h.intercept, h.value] for h in m.heads])
        for j, h in enumerate(m.heads):
            if h.weights.size:
                out[f"{p}w{j}"] = h.weights

    for i, m in enumerate(members):
        p = f"m{i}."
        if isinstance(m, LinearMember):
            out[p + "kind"] = np.array([0.0])
            linear(m, p)
        elif isinstance(m, BlendMember):
            out[p + "kind"] = np.array([3.0])
            linear(m.linear, p)
            t = m.trees
            for name in _TREE_ARRAYS:
                out[f"{p}t.{name}"] = np.asarray(getattr(t, name), dtype=np.float64)
            out[p + "t.depth"] = np.array([float(t.depth)])
        elif isinstance(m, ClusterMember):
            out[p + "kind"] = np.array([1.0])
            out[p + "components"], out[p + "centers"] = m.components, m.centers
            out[p + "table"] = m.table
        else:
            out[p + "kind"] = np.array([2.0])
            out[p + "random"] = np.array([m.reference, m.candidates], dtype=np.float64)
    return out


def members_from_arrays(arrays: Mapping[str, Any]) -> tuple[Member, ...]:
    """The inverse of :func:`members_to_arrays`; raises :class:`ConfigError` on a bad one."""
    names: tuple[HeadLink, ...] = ("logistic", "identity", "constant", "never")
    try:
        out: list[Member] = []
        for i in range(int(np.asarray(arrays["members"])[0])):
            p = f"m{i}."
            kind = int(np.asarray(arrays[p + "kind"])[0])

            def linear(p: str) -> LinearMember:
                links = np.asarray(arrays[p + "links"])
                scalars = np.asarray(arrays[p + "scalars"], dtype=np.float64)
                heads = []
                for j, code in enumerate(links):
                    w = np.asarray(arrays.get(f"{p}w{j}", np.zeros(0)), dtype=np.float64)
                    heads.append(
                        Head(names[int(code)], w, float(scalars[j, 0]), float(scalars[j, 1]))
                    )
                return LinearMember(tuple(heads))

            if kind == 0:
                out.append(linear(p))
            elif kind == 3:
                t = {n: np.asarray(arrays[f"{p}t.{n}"]) for n in _TREE_ARRAYS}
                out.append(BlendMember(linear(p), TreeMember(
                    feature=t["feature"].astype(np.int64), threshold=t["threshold"],
                    left=t["left"].astype(np.int64), right=t["right"].astype(np.int64),
                    leaf=t["leaf"].astype(np.bool_), missing_left=t["missing_left"].astype(np.bool_),
                    value=t["value"], group=t["group"].astype(np.int64),
                    baseline=t["baseline"].astype(np.float64),
                    depth=int(np.asarray(arrays[p + "t.depth"])[0]),
                )))  # fmt: skip
            elif kind == 1:
                out.append(ClusterMember(
                    np.asarray(arrays[p + "components"], dtype=np.float64),
                    np.asarray(arrays[p + "centers"], dtype=np.float64),
                    np.asarray(arrays[p + "table"], dtype=np.float64),
                ))  # fmt: skip
            elif kind == 2:
                ref, n = (int(v) for v in np.asarray(arrays[p + "random"]))
                out.append(RandomMember(ref, n))
            else:
                raise ConfigError(f"member {i}: unknown kind code {kind}")
        return tuple(out)
    except (KeyError, IndexError, TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"router artefact: missing or malformed array ({err})") from None


# --------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class Candidate:
    """A model a tier may route to: LLMModel name, served name (the header value and the
    body's ``model``), and its cost estimate ``intercept + per_char * len(prompt)``."""

    model: str
    served_name: str
    cost_intercept: float
    cost_per_char: float


@dataclass(frozen=True)
class Decision:
    """Which candidate answers, and why (``reason``: ``routed``, ``reference`` when no
    knob is calibrated, ``only-reference`` when the tenant may use nothing cheaper)."""

    candidate: Candidate
    index: int
    reason: str
    utility: tuple[float, ...] = ()


@dataclass(frozen=True, eq=False)
class TierRouter:
    """One tier's router: candidates, members, knob (module docstring)."""

    tier: str
    kind: str
    candidates: tuple[Candidate, ...]
    reference: int
    lam: float | None
    scale: float | None
    bits: int
    members: tuple[Member, ...]
    tenants: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Tenant id -> the candidates' model names it may use (a tenant not listed: all)."""
    aliases: frozenset[str] = frozenset()
    """Body ``model`` values that ask for routing besides the reference's served name."""

    def __post_init__(self) -> None:
        n = len(self.candidates)
        if n < 2 or not 0 <= self.reference < n:
            raise ConfigError(f"tier {self.tier}: needs >= 2 candidates and a reference among them")
        if self.lam is not None and not self.members:
            raise ConfigError(f"tier {self.tier}: a threshold needs a fitted router (members)")

    @functools.cached_property
    def _forest(self) -> TreeMember | None:
        """The blend members' trees as one forest (None unless every member blends)."""
        blends = [m for m in self.members if isinstance(m, BlendMember)]
        if not blends or len(blends) != len(self.members):
            return None
        return TreeMember.mean_of([m.trees for m in blends])

    def routes(self, model: str | None) -> bool:
        """Whether a request naming ``model`` (None: none) is routed."""
        return (
            model is None
            or model in self.aliases
            or (model == self.candidates[self.reference].served_name)
        )

    def utility(self, text: str, featuriser: FastHashing) -> FloatArray:
        idx, val = featuriser.features(text)
        forest = self._forest
        if forest is not None:  # blend: the linear heads' mean, and every tree in one walk
            blends = [m for m in self.members if isinstance(m, BlendMember)]
            lin = np.mean([m.linear.utility(idx, val, text) for m in blends], axis=0)
            return np.asarray(0.5 * (lin + forest.predict(difficulty(text))), dtype=np.float64)
        us = [m.utility(idx, val, text) for m in self.members]
        return np.asarray(us[0] if len(us) == 1 else np.mean(us, axis=0), dtype=np.float64)

    def decide(self, text: str, featuriser: FastHashing, tenant: str | None = None) -> Decision:
        """The candidate for a prompt of ``tenant`` (module docstring)."""
        ref = self.candidates[self.reference]
        allowed = self.tenants.get(tenant) if tenant is not None else None
        mask = [allowed is None or c.model in allowed or i == self.reference
                for i, c in enumerate(self.candidates)]  # fmt: skip
        if self.lam is None:
            return Decision(ref, self.reference, "reference")
        if sum(mask) == 1:
            return Decision(ref, self.reference, "only-reference")
        u = self.utility(text, featuriser)
        chars = float(len(text))
        cost = np.array(
            [max(c.cost_intercept + c.cost_per_char * chars, 1e-12) for c in self.candidates]
        )
        rel = cost / self.scale if self.scale is not None else cost / cost.max()
        score = u - (self.lam + _TIE) * rel
        score[~np.asarray(mask)] = -np.inf
        best = int(np.argmax(score))
        return Decision(self.candidates[best], best, "routed", tuple(float(x) for x in u))


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True, eq=False)
class FittedTier:
    """A tier's router fitted and calibrated on a routing set: members, cost model, knob,
    and what calibration measured (drops in points)."""

    kind: str
    bits: int
    members: tuple[Member, ...]
    models: tuple[str, ...]
    reference: int
    cost: LengthCost
    lam: float | None
    scale: float | None
    target_drop_points: float
    drop_points: float
    ucb_drop_points: float
    saving: float
    confidence: float
    routers: tuple[Router, ...] = ()
    """The fitted scikit-learn fold routers the members were compiled from."""
    oof_choice: IntArray | None = None
    """Each fitting prompt's option (column of ``models``) at the calibrated knob, decided on
    its out-of-fold utility: the decisions ``drop_points`` and ``saving`` were measured on
    (:func:`calibrated_shares` turns them into the planner's shares)."""


def make_serving_router(kind: str, seed: int = 0, text_columns: int | None = None) -> Router:
    """The core router of an API router kind (``good-enough`` is Hybrid LLM's; ``blend``
    needs ``text_columns``, the hashed text block's width before the difficulty features)."""
    if kind == "random":
        return RandomRouter(seed)
    if kind == "good-enough":
        return GoodEnoughRouter()
    if kind == "quality":
        return QualityRouter()
    if kind == "cluster":
        return ClusterRouter(seed=seed)
    if kind == "blend":
        if text_columns is None:
            raise ValueError("router kind 'blend' needs text_columns")
        return BlendRouter(text_columns, seed=seed)
    raise ValueError(f"unknown router kind {kind!r} ({', '.join(KINDS)})")


def fit_features(kind: str, bits: int, prompts: Sequence[str]) -> Any:
    """The feature matrix ``kind`` is fitted on: the hashed text (``blend``: then the
    difficulty features)."""
    x = HashingFeaturiser(bits).transform(prompts)
    if kind == "blend":
        x = sp.hstack([x, sp.csr_matrix(DifficultyFeaturiser().transform(prompts))]).tocsr()
    return x


def fit_tier(
    data: RoutingSet,
    kind: str,
    target_drop_points: float,
    confidence: float = 0.9,
    bits: int = 16,
    folds: int = 5,
    seed: int = 0,
    reference: int | None = None,
) -> FittedTier:
    """Cross-fit ``kind`` on hashed features of ``data``, calibrate ``lambda`` for the
    target drop on the out-of-fold utilities with prompt-length cost estimates (as
    ``llmfleet bench routing`` does), and compile the fold routers."""
    x = fit_features(kind, bits, data.prompts)
    lengths = np.array([len(p) for p in data.prompts], dtype=np.float64)
    cost = LengthCost.fit(lengths, data.cost)
    seen = cost.predict(lengths)
    ref = data.reference if reference is None else reference

    def make() -> Router:
        return make_serving_router(kind, seed, text_columns=2**bits)

    cf = cross_fit(make, x, data.quality, data.cost, folds, seed)
    cal = calibrate(
        cf.oof, data.quality, data.cost, target_drop_points / 100, confidence,
        reference=ref, seed=seed, absolute=kind != "random",
        decision_cost=seen,
    )  # fmt: skip
    return FittedTier(
        kind=kind,
        bits=bits,
        members=compile_members(cf.routers, 2**bits),
        models=data.models,
        reference=ref,
        cost=cost,
        lam=cal.lam,
        scale=cal.scale,
        target_drop_points=target_drop_points,
        drop_points=100 * cal.drop,
        ucb_drop_points=100 * cal.ucb_drop,
        saving=cal.saving,
        confidence=confidence,
        routers=cf.routers,
        oof_choice=cal.choose(cf.oof, seen),
    )


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, eq=False)
class RouterConfig:
    """The router service's configuration: a :class:`TierRouter` per tier."""

    tiers: Mapping[str, TierRouter]
    tier_header: str = "x-tier"
    tenant_header: str = "x-tenant-id"
    model_header: str = "x-ai-eg-model"


def _get(obj: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in obj:
        raise ConfigError(f"{where}.{key}: missing")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(
            f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}"
        )
    return value


def _number(obj: Mapping[str, Any], key: str, where: str, optional: bool = False) -> float | None:
    if optional and obj.get(key) is None:
        return None
    value = float(_get(obj, key, where, (int, float)))
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}.{key}: must be a finite number >= 0, got {value}")
    return value


def parse_config(
    doc: Mapping[str, Any], members: Mapping[str, tuple[Member, ...]] | None = None
) -> RouterConfig:
    """The configuration from its JSON (the ConfigMap's ``router.json``). ``members``: each
    tier's router members, keyed by the tier's ``artefact`` value (the I/O shell reads the
    files); a tier with ``members`` inline needs none."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"expected a JSON object, got {type(doc).__name__}")
    if doc.get("apiVersion") != CONFIG_API_VERSION:
        raise ConfigError(
            f"apiVersion: must be {CONFIG_API_VERSION}, got {doc.get('apiVersion')!r}"
        )
    tiers_doc = _get(doc, "tiers", "", dict)
    tiers: dict[str, TierRouter] = {}
    for name, t in sorted(tiers_doc.items()):
        where = f"tiers.{name}"
        if not isinstance(t, Mapping):
            raise ConfigError(f"{where}: expected an object")
        kind = _get(t, "kind", where, str)
        if kind not in KINDS:
            raise ConfigError(f"{where}.kind: must be one of {', '.join(KINDS)}, got {kind!r}")
        cands = []
        for i, c in enumerate(_get(t, "candidates", where, list)):
            w = f"{where}.candidates[{i}]"
            if not isinstance(c, Mapping):
                raise ConfigError(f"{w}: expected an object")
            cands.append(Candidate(
                _get(c, "model", w, str), _get(c, "servedName", w, str),
                float(_number(c, "costIntercept", w) or 0.0), float(_number(c, "costPerChar", w) or 0.0),
            ))  # fmt: skip
        models = [c.model for c in cands]
        reference = _get(t, "reference", where, str)
        if reference not in models:
            raise ConfigError(
                f"{where}.reference: {reference!r} is not among the candidates {models}"
            )
        lam = _number(t, "lambda", where, optional=True)
        scale = _number(t, "costScale", where, optional=True)
        if scale is not None and scale <= 0:
            raise ConfigError(f"{where}.costScale: must be > 0, got {scale}")
        bits = int(_get(t, "bits", where, int)) if "bits" in t else 16
        artefact = t.get("artefact")
        if artefact is not None:
            if not isinstance(artefact, str) or members is None or artefact not in members:
                raise ConfigError(f"{where}.artefact: {artefact!r} was not loaded")
            tier_members = members[artefact]
        elif "members" in t:
            arrays = {
                k: np.asarray(v, dtype=np.float64)
                for k, v in _get(t, "members", where, dict).items()
            }
            tier_members = members_from_arrays(arrays)
        else:
            tier_members = ()
        for m in tier_members:
            lin = m.linear if isinstance(m, BlendMember) else m
            if isinstance(lin, ClusterMember):
                n = lin.table.shape[0]
            elif isinstance(lin, RandomMember):
                n = lin.candidates
            else:
                n = len(lin.heads)
            if n != len(cands) or (isinstance(m, BlendMember) and m.trees.baseline.size != n):
                raise ConfigError(
                    f"{where}: the router scores {n} models, the tier has {len(cands)} candidates"
                )
            if isinstance(lin, LinearMember) and any(
                h.weights.size not in (0, 2**bits) for h in lin.heads
            ):
                raise ConfigError(
                    f"{where}.bits: the router's weights do not have 2**{bits} columns"
                )
        tenants_doc = t.get("tenants") or {}
        if not isinstance(tenants_doc, Mapping):
            raise ConfigError(f"{where}.tenants: expected an object of tenant id -> model names")
        tenants = {str(k): frozenset(str(m) for m in v) for k, v in tenants_doc.items()}
        aliases = frozenset(str(a) for a in t.get("aliases") or ())
        tiers[name] = TierRouter(
            tier=name, kind=kind, candidates=tuple(cands), reference=models.index(reference),
            lam=lam, scale=scale, bits=bits, members=tier_members, tenants=tenants, aliases=aliases,
        )  # fmt: skip
    headers = doc.get("headers") or {}
    if not isinstance(headers, Mapping):
        raise ConfigError("headers: expected an object")
    return RouterConfig(
        tiers=tiers,
        tier_header=str(headers.get("tier", "x-tier")),
        tenant_header=str(headers.get("tenant", "x-tenant-id")),
        model_header=str(headers.get("model", "x-ai-eg-model")),
    )


# --------------------------------------------------------------------------- the planner's shares

#: How far the request and prompt shares of a tier may sum from 1 (rounding in a ConfigMap).
SHARE_TOLERANCE = 1e-6
SHARES_API_VERSION = "llmfleet.dev/router-shares/v1"


@dataclass(frozen=True)
class RouteShare:
    """What one option of a routed tier answers, as fractions of the tier's traffic to its
    reference model (what the gateway counts before routing).

    ``requests``: share of the requests; ``prompt_tokens``: share of their prompt tokens
    (the queries a cheaper model gets may be shorter or longer than the mean);
    ``output_tokens``: the option's output tokens *per sample* over the reference's output
    tokens for all the requests (the options' values sum to 1 when every model answers at
    the reference's length; a model that answers its queries 20% longer makes them sum
    above 1); ``samples``: ``n`` of best-of-n (BEST-Route's ``<model>@<n>``; 1 otherwise)."""

    model: str
    requests: float
    prompt_tokens: float
    output_tokens: float
    samples: int = 1

    def __post_init__(self) -> None:
        for name in ("requests", "prompt_tokens", "output_tokens"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{self.model}: {name} must be a finite number >= 0, got {v}")
        if self.requests > 1 + SHARE_TOLERANCE or self.prompt_tokens > 1 + SHARE_TOLERANCE:
            raise ValueError(f"{self.model}: a request or prompt share is at most 1")
        if self.samples < 1:
            raise ValueError(f"{self.model}: samples must be >= 1, got {self.samples}")


@dataclass(frozen=True)
class TierShares:
    """A routed tier's calibrated split: which options answer how much of its traffic.

    Requests and prompt tokens are partitioned (each sums to 1 over ``options``); output
    tokens are per sample. **Prefill of best-of-n:** an option with ``n`` samples costs its
    prompt once (``prefill_per_sample=False``, the default: BEST-Route's cost model, and what
    vLLM does for one request with ``n`` -- the samples fork the prompt's KV blocks -- or for
    ``n`` requests of one prompt with automatic prefix caching, on by default in vLLM V1);
    ``True`` counts ``n`` prefills (a router that fans out separate requests to replicas
    without prefix caching). Requests are client requests, counted once whatever ``n``."""

    tier: str
    reference: str
    """The tier's reference LLMModel: the flows these shares split."""
    options: tuple[RouteShare, ...]
    prefill_per_sample: bool = False
    note: str = ""
    """Where the shares come from (a calibration's figures), for people."""
    drop_points: float | None = None
    """The calibration's measured quality drop against the reference, in points of the
    tier's metric, on the prompts the shares were counted on (None: not measured)."""

    def __post_init__(self) -> None:
        if self.drop_points is not None and not math.isfinite(self.drop_points):
            raise ValueError(f"tier {self.tier}: drop_points must be finite")
        if not self.options:
            raise ValueError(f"tier {self.tier}: no options")
        keys = [(o.model, o.samples) for o in self.options]
        if len(set(keys)) != len(keys):
            raise ValueError(f"tier {self.tier}: an option (model, samples) appears twice")
        for name in ("requests", "prompt_tokens"):
            total = sum(getattr(o, name) for o in self.options)
            if abs(total - 1.0) > SHARE_TOLERANCE:
                raise ValueError(f"tier {self.tier}: {name} shares sum to {total:.6g}, not 1")

    def multipliers(self) -> dict[str, tuple[float, float, float]]:
        """Model -> factors of a reference flow's (requests, prompt, output) rates it gets:
        ``requests``, ``prompt_tokens`` (x ``n`` with ``prefill_per_sample``) and
        ``output_tokens x n``, summed over the model's options (reference first)."""
        out: dict[str, tuple[float, float, float]] = {self.reference: (0.0, 0.0, 0.0)}
        for o in self.options:
            rq, pr, ou = out.get(o.model, (0.0, 0.0, 0.0))
            prefills = o.samples if self.prefill_per_sample else 1
            out[o.model] = (
                rq + o.requests,
                pr + o.prompt_tokens * prefills,
                ou + o.output_tokens * o.samples,
            )
        return out

    def share(self, model: str) -> float:
        """Share of the tier's requests ``model`` answers (over its options)."""
        return sum(o.requests for o in self.options if o.model == model)


@dataclass(frozen=True)
class RouterShares:
    """The planner's input from the router: the calibrated split of every routed tier."""

    tiers: tuple[TierShares, ...] = ()
    demand_label: Literal["requested", "served"] = "requested"
    """Which model the demand's flows of a routed tier are labelled with: ``requested``
    (the gateway counts before the router picks: the controller's) or ``served`` (the model
    that answered: the digital twin's history); with ``served``
    :func:`llmfleet.cycle.routing.route_forecasts` first folds a routed tier's candidate
    flows back into its reference flow. Not part of the JSON document (the reader's
    knowledge of its demand source, not the router's)."""

    def __post_init__(self) -> None:
        names = [t.tier for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError("a tier appears twice in the router shares")

    def get(self, tier: str) -> TierShares | None:
        return next((t for t in self.tiers if t.tier == tier), None)


def split_option(name: str) -> tuple[str, int]:
    """``"<model>@<n>"`` (a BEST-Route option column) -> ``(model, n)``; else ``(name, 1)``."""
    base, sep, n = name.rpartition("@")
    if sep and base and n.isdigit() and int(n) >= 1:
        return base, int(n)
    return name, 1


def prompt_token_estimate(prompts: Sequence[str], chars_per_token: int = 4) -> FloatArray:
    """``ceil(chars / 4)`` per prompt (the benchmarks' estimate of English text)."""
    return np.array([math.ceil(len(p) / chars_per_token) for p in prompts], dtype=np.float64)


def shares_of_choices(
    tier: str,
    options: Sequence[str],
    reference: int,
    choice: IntArray,
    prompt_tokens: FloatArray,
    output_tokens: FloatArray | None = None,
    names: Mapping[str, str] | None = None,
    prefill_per_sample: bool = False,
    note: str = "",
) -> TierShares:
    """The shares of per-prompt decisions: ``choice[i]`` is the option (column of
    ``options``, names ``<model>`` or ``<model>@<n>``) prompt ``i`` goes to, ``reference``
    the reference's column; ``prompt_tokens`` (n,) the prompts' tokens; ``output_tokens``
    (n, options) each option's output tokens per sample on each prompt (None: the same for
    every option: output shares equal request shares); ``names`` maps a data set's model
    names to LLMModel names (unlisted: unchanged)."""
    choice = np.asarray(choice, dtype=np.int64)
    n, k = choice.shape[0], len(options)
    if n == 0:
        raise ValueError("no decisions to count")
    if not 0 <= reference < k or choice.min() < 0 or choice.max() >= k:
        raise ValueError(f"choices and the reference must be columns of the {k} options")
    prompt = np.asarray(prompt_tokens, dtype=np.float64)
    if prompt.shape != (n,):
        raise ValueError(f"prompt_tokens must have shape ({n},), got {prompt.shape}")
    counts = np.bincount(choice, minlength=k).astype(np.float64)
    p_tot = float(prompt.sum())
    p_share = np.bincount(choice, weights=prompt, minlength=k) / p_tot if p_tot > 0 else counts / n
    if output_tokens is None:
        o_share = counts / n
    else:
        out = np.asarray(output_tokens, dtype=np.float64)
        if out.shape != (n, k):
            raise ValueError(f"output_tokens must have shape ({n}, {k}), got {out.shape}")
        ref_total = float(out[:, reference].sum())
        rows = out[np.arange(n), choice]
        o_share = (
            np.bincount(choice, weights=rows, minlength=k) / ref_total
            if ref_total > 0
            else counts / n
        )
    names = names or {}
    ref_model = names.get(split_option(options[reference])[0], split_option(options[reference])[0])
    merged: dict[tuple[str, int], list[float]] = {}
    for j, opt in enumerate(options):
        base, samples = split_option(opt)
        key = (names.get(base, base), samples)
        acc = merged.setdefault(key, [0.0, 0.0, 0.0])
        acc[0] += float(counts[j]) / n
        acc[1] += float(p_share[j])
        acc[2] += float(o_share[j])
    shares = tuple(
        RouteShare(m, rq, pr, ou, s)
        for (m, s), (rq, pr, ou) in sorted(merged.items())
        if rq > 0 or (m == ref_model and s == 1)
    )
    return TierShares(tier, ref_model, shares, prefill_per_sample, note)


def calibrated_shares(
    fitted: FittedTier,
    data: RoutingSet,
    tier: str,
    names: Mapping[str, str] | None = None,
    prompt_tokens: FloatArray | None = None,
    output_tokens: FloatArray | None = None,
    prefill_per_sample: bool = False,
) -> TierShares:
    """The shares a fitted tier's calibrated router gives on the prompts it was fitted on
    (``data``, as passed to :func:`fit_tier`), from their out-of-fold decisions: the same
    decisions its quality drop was calibrated on, so held-out figures, not the fit's.
    ``prompt_tokens`` default :func:`prompt_token_estimate`; see :func:`shares_of_choices`."""
    if fitted.oof_choice is None or fitted.oof_choice.shape[0] != data.n:
        raise ValueError("the fitted tier has no out-of-fold decisions for these prompts")
    if tuple(data.models) != tuple(fitted.models):
        raise ValueError(f"the data's models {data.models} are not the fit's {fitted.models}")
    tokens = prompt_token_estimate(data.prompts) if prompt_tokens is None else prompt_tokens
    small = ", ".join(
        f"{float(np.mean(fitted.oof_choice == j)):.1%} to {m}"
        for j, m in enumerate(fitted.models)
        if j != fitted.reference
    )
    note = (
        f"{fitted.kind} router calibrated for a {fitted.target_drop_points:g}-point drop on "
        f"{data.n} prompts: {small}; drop {fitted.drop_points:.2f} points "
        f"(bound {fitted.ucb_drop_points:.2f} at {fitted.confidence:.0%}), "
        f"saving {fitted.saving:.1%}"
    )
    shares = shares_of_choices(
        tier, fitted.models, fitted.reference, fitted.oof_choice, tokens, output_tokens,
        names, prefill_per_sample, note,
    )  # fmt: skip
    return replace(shares, drop_points=float(fitted.drop_points))


def fit_tier_shares(
    data: RoutingSet,
    tier: str,
    target_drop_points: float,
    kind: str = "quality",
    names: Mapping[str, str] | None = None,
    confidence: float = 0.9,
    bits: int = 16,
    folds: int = 5,
    seed: int = 0,
    output_tokens: FloatArray | None = None,
) -> tuple[FittedTier, TierShares]:
    """Fit and calibrate ``kind`` for ``target_drop_points`` on ``data`` (:func:`fit_tier`)
    and the shares it gives (:func:`calibrated_shares`): e.g. the share of MMLU prompts the
    quality router sends to the small model at a 1-point drop."""
    fitted = fit_tier(data, kind, target_drop_points, confidence, bits, folds, seed)
    return fitted, calibrated_shares(fitted, data, tier, names, output_tokens=output_tokens)


def router_shares(
    router: TierRouter,
    prompts: Sequence[str],
    featuriser: FastHashing | None = None,
    tenant: str | None = None,
    prompt_tokens: FloatArray | None = None,
) -> TierShares:
    """The shares a served tier router gives on ``prompts`` (e.g. a held-out sample of the
    tier's traffic), decided one by one as the router service does; output shares equal
    request shares (answers unknown)."""
    feat = featuriser or FastHashing(router.bits)
    choice = np.array([router.decide(p, feat, tenant).index for p in prompts], dtype=np.int64)
    tokens = prompt_token_estimate(prompts) if prompt_tokens is None else prompt_tokens
    models = [c.model for c in router.candidates]
    return shares_of_choices(
        router.tier, models, router.reference, choice, tokens,
        note=f"{router.kind} router's decisions on {len(prompts)} prompts",
    )  # fmt: skip


def shares_document(shares: RouterShares) -> dict[str, Any]:
    """The shares as JSON (:data:`SHARES_API_VERSION`; a ConfigMap key beside ``router.json``)."""
    return {
        "apiVersion": SHARES_API_VERSION,
        "tiers": {
            t.tier: {
                "reference": t.reference,
                "prefillPerSample": t.prefill_per_sample,
                "note": t.note,
                **({} if t.drop_points is None else {"dropPoints": t.drop_points}),
                "options": [
                    {
                        "model": o.model,
                        "samples": o.samples,
                        "requests": o.requests,
                        "promptTokens": o.prompt_tokens,
                        "outputTokens": o.output_tokens,
                    }
                    for o in t.options
                ],
            }
            for t in shares.tiers
        },
    }


def _drop(t: Mapping[str, Any], where: str) -> float | None:
    v = t.get("dropPoints")
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{where}.dropPoints: must be a finite number, got {v!r}")
    return float(v)


def parse_shares(doc: Mapping[str, Any]) -> RouterShares:
    """The inverse of :func:`shares_document`; :class:`ConfigError` naming the key."""
    if not isinstance(doc, Mapping) or doc.get("apiVersion") != SHARES_API_VERSION:
        got = doc.get("apiVersion") if isinstance(doc, Mapping) else type(doc).__name__
        raise ConfigError(f"apiVersion: must be {SHARES_API_VERSION}, got {got!r}")
    tiers = []
    for name, t in sorted(_get(doc, "tiers", "", dict).items()):
        where = f"tiers.{name}"
        if not isinstance(t, Mapping):
            raise ConfigError(f"{where}: expected an object")
        options = []
        for i, o in enumerate(_get(t, "options", where, list)):
            w = f"{where}.options[{i}]"
            if not isinstance(o, Mapping):
                raise ConfigError(f"{w}: expected an object")
            try:
                options.append(RouteShare(
                    _get(o, "model", w, str), float(_number(o, "requests", w) or 0.0),
                    float(_number(o, "promptTokens", w) or 0.0),
                    float(_number(o, "outputTokens", w) or 0.0),
                    int(_get(o, "samples", w, int)) if "samples" in o else 1,
                ))  # fmt: skip
            except ValueError as err:
                if isinstance(err, ConfigError):
                    raise
                raise ConfigError(f"{w}: {err}") from None
        try:
            tiers.append(TierShares(
                str(name), _get(t, "reference", where, str), tuple(options),
                bool(t.get("prefillPerSample", False)), str(t.get("note", "")),
                _drop(t, where),
            ))  # fmt: skip
        except ValueError as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(f"{where}: {err}") from None
    return RouterShares(tuple(tiers))
