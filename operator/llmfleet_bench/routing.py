r"""``llmfleet bench routing``: quality-aware model routers on per-query quality data.

**Input** (``--data PATH``; default ``$LLMFLEET_ROUTING_DIR`` or ``../shared/routing/routellm``):

1. *The general schema*: a CSV file (or a folder of them, concatenated), one row per prompt,
   any number ``M >= 2`` of models::

       prompt,quality:<model 1>,cost:<model 1>,quality:<model 2>,cost:<model 2>,...

   ``prompt`` is the query text; ``quality:<m>`` how good model ``m``'s answer was (a number,
   higher is better: 0/1 correctness, a score in [0, 1]; ``true``/``false`` read as 1/0);
   ``cost:<m>`` what it cost (USD per query, or any unit shared by all models, >= 0). Every
   ``quality:<m>`` needs its ``cost:<m>`` and vice versa; other columns are ignored. A
   malformed file is rejected with :class:`RoutingDataError` naming the file, the column and
   (for a bad value) the row.

2. *RouteLLM's native format* (``/work/shared/routing/routellm``: ``mmlu/`` and ``gsm8k/``),
   read by a small adapter (:func:`read_routellm`): ``prompt``, one boolean correctness
   column per model, optionally ``<model>_response`` with its answer. Prompts listed in the
   folder's ``contaminated_prompts.jsonl`` (``eval_prompt``) are left out. Costs are not in
   the files: ``cost = (in_price * tokens(prompt) + out_price * tokens(answer)) / 1e6`` at the
   list prices :data:`PRICES` (USD per million tokens: gpt-4-1106-preview 10 in / 30 out,
   OpenAI; Mixtral-8x7B-Instruct 0.60 / 0.60, Together AI; ``--price MODEL=IN,OUT``
   overrides), ``tokens(text) = ceil(chars / 4)`` (the usual 4 characters per token of
   English), and an answer of :data:`DEFAULT_ANSWER_TOKENS` token (the letter) where the file
   has no response text (MMLU). ``--write-csv OUT`` converts it to the general schema. A
   folder without CSV files of its own is searched down its subfolders: each folder that
   holds CSV files is one dataset (``--data /work/shared/routing`` finds ``mmlu`` and
   ``gsm8k``).

**Method.** The TF-IDF featuriser (word 1-2-grams, 20,000 columns; for ``uniroute`` its
64-d LSA) is fitted once per dataset on every prompt's *text* — never a label — as a
deployment fits it on its query log. Then, per seeded split (``--splits``, default 10): 30%
of the prompts are held out as the test split; the other 70% (development) fit, by
5-fold cross-fitting (:mod:`llmfleet.routing.models.crossfit`), each router: its
out-of-fold utilities are the calibration split on which the knob is set for the target drop
(``--target-drop``, 1 point) in fixed sequence (:mod:`llmfleet.routing.models.policy`), never
with a test label. ``--bound split`` (the default, the targets below): the expected drop's
bootstrap point estimate within the target *and* a 95% bootstrap prediction bound of the
drop of a test split of its size within target + 0.5 point; ``--bound expected``: only a
bootstrap upper bound of the expected drop at ``--confidence`` (0.9). The decision weighs each query's
cost *estimated from its prompt's length* (:class:`~llmfleet.routing.models.policy.LengthCost`,
fitted on the development split: the answer's length is unknown when routing), so long,
expensive prompts are routed to the small model first; savings are measured on the real
costs. The oracle sees the real costs. By default (``--cost-order auto``) the calibration
also picks between that order and each query's relative cost (which ignores the prompts'
sizes: on GSM8K longer problems are harder, so routing long prompts first loses), each
tested at half the error rate; ``--cost-order absolute|relative`` fixes one; ``--length-bins K``
adds a one-hot of the prompt's length bin to the features; ``--predictive`` calibrates a
prediction bound of the drop over a test split's number of queries instead of a bound of
the expected drop (safer on small sets, at a lower saving). The test split is scored once with
the fold ensemble and the calibrated knob. Routers: ``random``, ``hybrid-llm`` (Hybrid LLM's
"small is good enough" classifier), ``quality`` (a quality predictor per model, logistic on
TF-IDF), ``boosted`` (gradient-boosted trees per model on the hand-made difficulty features of
:class:`~llmfleet.routing.models.features.DifficultyFeaturiser`: length, numbers and their
magnitudes, operation words, ...), ``blend`` (the mean of ``quality`` and ``boosted``),
``uniroute`` (cluster errors), and the ``oracle`` (each query to the cheapest model whose
answer is best). Below the table: each router's calibration error on every split.

**Columns** (mean over splits; ``±`` one standard deviation):

* ``saving`` — ``1 - cost / cost(all reference)`` at the calibrated knob, on the test split;
* ``drop`` — quality drop on the test split in points (the reference model's minus the
  router's), mean and worst split; ``calib err`` — mean of (drop - target);
* ``over+0.5`` — share of splits whose drop exceeds the target by more than 0.5 point;
* ``large`` — share of test queries sent to the reference (large) model;
* ``post hoc`` — the largest saving on the test curve with drop <= target (the knob picked
  with the test labels: what a perfect calibration would give this router);
* ``APGR`` (RouteLLM), ``AIQ`` (RouterBench, quality averaged over the cost range of the
  two pure policies), see :mod:`llmfleet.routing.models.metrics`;
* ``AUC`` — how well the router's predicted gap ``U_ref - U_cheap`` ranks the test queries
  that only the reference model answers better (``q_ref > q_cheap``) above the others.

**BEST-Route** (arXiv 2506.22716) chooses a model *and* a number of samples n (best-of-n
with a reward model). RouteLLM's data has one answer per model and query, so there is
nothing to choose n from: no (model, n) router is measured here. The choice itself is in
:mod:`llmfleet.routing.models.best_route` (each (model, n) an option column built from a
declared sample set, routed and calibrated like a model), tested on a synthetic sample set.

**Targets** (:data:`TARGET_SAVING`, :data:`MAX_MEAN_DROP`, :data:`MAX_OVERSHOOT`,
:data:`MIN_WITHIN_SHARE`), for :data:`PRODUCT_ROUTER` on every dataset: saving >= 30% at the
calibrated knob for a 1-point target; mean test drop <= 1 point; the test drop at most 0.5
point over the target in >= 95% of splits. A miss prints the shortfall and what limits it:
the shares of queries only the large / only the small model answers right, the ranking's
AUC, the best ranking's post-hoc saving (its threshold picked on the test labels: an
optimistic upper bound of what this signal allows), the oracle's, and the test split's
granularity (one query lost, in points).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from llmfleet.routing.models import (
    RoutingSet,
    TfidfFeaturiser,
    auc,
    calibrate,
    cross_fit,
    make_router,
    outcome,
    saving_at_drop,
    seeded_split,
    tradeoff_curve,
)
from llmfleet.routing.models.data import FloatArray, IntArray
from llmfleet.routing.models.features import DifficultyFeaturiser, FeatureMatrix, dense, lsa
from llmfleet.routing.models.metrics import aiq, apgr
from llmfleet.routing.models.policy import LengthCost, cost_scale, route, switch_points
from llmfleet.routing.models.routers import ROUTERS, Router
from llmfleet_bench.targets import Threshold

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "routing" / "routellm"

#: List prices, USD per million tokens (input, output).
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4-1106-preview": (10.0, 30.0),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": (0.60, 0.60),
}
CHARS_PER_TOKEN = 4
DEFAULT_ANSWER_TOKENS = 1

#: The router the targets are checked on.
PRODUCT_ROUTER = "blend"
TARGET_SAVING = 0.30
TARGET_DROP = 0.01
MAX_MEAN_DROP = 0.01
MAX_OVERSHOOT = 0.005
MIN_WITHIN_SHARE = 0.95

QUALITY = "quality:"
COST = "cost:"


class RoutingDataError(ValueError):
    """A routing data file that does not follow its schema (the message names the column)."""


# ---------------------------------------------------------------------------------------------
# Readers


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    csv.field_size_limit(1 << 30)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise RoutingDataError(f"{path}: empty file (expected a header row)")
            return header, list(reader)
    except UnicodeDecodeError as e:
        raise RoutingDataError(f"{path}: not UTF-8 text ({e})") from None


def _number(text: str, path: Path, column: str, row: int) -> float:
    low = text.strip().lower()
    if low in ("true", "false"):
        return 1.0 if low == "true" else 0.0
    try:
        value = float(low)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise RoutingDataError(
            f"{path}: column {column!r}, row {row}: {text!r} is not a finite number"
        )
    return value


def read_routing_csv(path: Path) -> RoutingSet:
    """A file of the general schema (module docstring) as a :class:`RoutingSet`."""
    header, rows = _rows(path)
    if "prompt" not in header:
        raise RoutingDataError(f"{path}: missing column 'prompt' (columns: {header})")
    q_models = [h[len(QUALITY) :] for h in header if h.startswith(QUALITY)]
    c_models = [h[len(COST) :] for h in header if h.startswith(COST)]
    for m in q_models:
        if m not in c_models:
            raise RoutingDataError(
                f"{path}: missing column '{COST}{m}' (model {m!r} has '{QUALITY}{m}')"
            )
    for m in c_models:
        if m not in q_models:
            raise RoutingDataError(
                f"{path}: missing column '{QUALITY}{m}' (model {m!r} has '{COST}{m}')"
            )
    if len(q_models) < 2:
        raise RoutingDataError(
            f"{path}: needs '{QUALITY}<model>' and '{COST}<model>' columns for >= 2 models, got {q_models}"
        )
    if len(set(q_models)) != len(q_models):
        raise RoutingDataError(f"{path}: a model's columns appear twice ({q_models})")
    col = {h: i for i, h in enumerate(header)}
    prompts: list[str] = []
    quality = np.zeros((len(rows), len(q_models)))
    cost = np.zeros((len(rows), len(q_models)))
    for r, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise RoutingDataError(
                f"{path}: row {r} has {len(row)} fields, the header {len(header)}"
            )
        prompts.append(row[col["prompt"]])
        for j, m in enumerate(q_models):
            quality[r - 2, j] = _number(row[col[QUALITY + m]], path, QUALITY + m, r)
            c = _number(row[col[COST + m]], path, COST + m, r)
            if c < 0:
                raise RoutingDataError(f"{path}: column '{COST}{m}', row {r}: cost {c} is negative")
            cost[r - 2, j] = c
    if not prompts:
        raise RoutingDataError(f"{path}: no rows")
    return RoutingSet.build(prompts, q_models, quality, cost)


def write_routing_csv(data: RoutingSet, path: Path) -> None:
    """``data`` in the general schema."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["prompt", *[h + m for m in data.models for h in (QUALITY, COST)]])
        for i, p in enumerate(data.prompts):
            cells = [
                f"{v:g}"
                for j in range(len(data.models))
                for v in (data.quality[i, j], data.cost[i, j])
            ]
            w.writerow([p, *cells])


def tokens(text: str) -> int:
    """Estimated tokens of ``text``: ``ceil(chars / 4)``."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def read_routellm(folder: Path, prices: dict[str, tuple[float, float]] | None = None) -> RoutingSet:
    """RouteLLM's per-query correctness CSVs in ``folder`` (module docstring), costed at
    ``prices`` (default :data:`PRICES`), contaminated prompts left out."""
    prices = PRICES if prices is None else prices
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise RoutingDataError(f"{folder}: no CSV files")
    contaminated: set[str] = set()
    jsonl = folder / "contaminated_prompts.jsonl"
    if jsonl.exists():
        for line in jsonl.read_text(encoding="utf-8").splitlines():
            if line.strip():
                contaminated.add(str(json.loads(line)["eval_prompt"]))
    models: list[str] | None = None
    prompts: list[str] = []
    quality: list[list[float]] = []
    cost: list[list[float]] = []
    for path in files:
        header, rows = _rows(path)
        if "prompt" not in header:
            raise RoutingDataError(f"{path}: missing column 'prompt' (columns: {header})")
        here = [h for h in header if h != "prompt" and not h.endswith("_response")]
        if models is None:
            models = here
        elif here != models:
            raise RoutingDataError(f"{path}: model columns {here} differ from {models}")
        for m in here:
            if m not in prices:
                raise RoutingDataError(
                    f"{path}: column {m!r}: no price for this model (--price {m}=IN,OUT)"
                )
        col = {h: i for i, h in enumerate(header)}
        for r, row in enumerate(rows, start=2):
            if len(row) != len(header):
                raise RoutingDataError(
                    f"{path}: row {r} has {len(row)} fields, the header {len(header)}"
                )
            text = row[col["prompt"]]
            if text in contaminated:
                continue
            prompts.append(text)
            quality.append([_number(row[col[m]], path, m, r) for m in here])
            costs = []
            for m in here:
                answer = col.get(f"{m}_response")
                out = tokens(row[answer]) if answer is not None else DEFAULT_ANSWER_TOKENS
                p_in, p_out = prices[m]
                costs.append((p_in * tokens(text) + p_out * out) / 1e6)
            cost.append(costs)
    if models is None or not prompts:
        raise RoutingDataError(f"{folder}: no rows")
    return RoutingSet.build(prompts, models, quality, cost)


def _is_general(path: Path) -> bool:
    header, _ = _rows(path) if path.stat().st_size < (1 << 31) else ([], [])
    return any(h.startswith(QUALITY) for h in header)


def load_datasets(
    path: Path, prices: dict[str, tuple[float, float]] | None = None
) -> list[tuple[str, RoutingSet]]:
    """``(name, data)`` per dataset under ``path`` (module docstring)."""
    if not path.exists():
        raise RoutingDataError(f"{path}: no such file or folder")
    if path.is_file():
        return [(path.stem, read_routing_csv(path))]
    subdirs = sorted(d for d in path.iterdir() if d.is_dir() and any(d.rglob("*.csv")))
    if subdirs and not any(path.glob("*.csv")):
        return [ds for d in subdirs for ds in load_datasets(d, prices)]
    files = sorted(path.glob("*.csv"))
    if not files:
        raise RoutingDataError(f"{path}: no CSV files")
    if _is_general(files[0]):
        parts = [read_routing_csv(f) for f in files]
        if any(p.models != parts[0].models for p in parts):
            raise RoutingDataError(f"{path}: the files name different models")
        return [(path.name, RoutingSet.build(
            [t for p in parts for t in p.prompts], parts[0].models,
            np.vstack([p.quality for p in parts]), np.vstack([p.cost for p in parts]),
        ))]  # fmt: skip
    return [(path.name, read_routellm(path, prices))]


# ---------------------------------------------------------------------------------------------
# The experiment


@dataclass
class Run:
    """One router on one split."""

    saving: float
    drop: float
    large_share: float
    post_hoc: float
    apgr: float
    aiq: float
    auc: float
    calibrated: bool
    n_test: int
    #: the calibrated knob (``None``: every query to the reference model)
    lam: float | None = None
    #: shares of test queries only the reference / only the cheapest model answers better
    only_ref: float = math.nan
    only_cheap: float = math.nan


@dataclass
class RouterResult:
    name: str
    runs: list[Run] = field(default_factory=list)

    def mean(self, attr: str) -> float:
        vals = [getattr(r, attr) for r in self.runs]
        vals = [v for v in vals if not math.isnan(v)]
        return float(np.mean(vals)) if vals else math.nan

    def std(self, attr: str) -> float:
        vals = [getattr(r, attr) for r in self.runs]
        return float(np.std(vals)) if vals else math.nan

    def worst_drop(self) -> float:
        return max(r.drop for r in self.runs)

    def over_share(self, target: float, margin: float) -> float:
        return float(np.mean([r.drop > target + margin + 1e-12 for r in self.runs]))


@dataclass(frozen=True)
class Settings:
    splits: int = 10
    test_share: float = 0.3
    folds: int = 5
    target_drop: float = TARGET_DROP
    confidence: float = 0.5
    routers: tuple[str, ...] = ROUTERS
    seed: int = 0
    max_features: int = 20_000
    length_bins: int = 0
    absolute: bool | None = None
    predictive: bool = False
    #: ``None``: bound the expected drop only; else also keep a prediction bound of a test
    #: split's drop within ``target_drop + overshoot`` at ``overshoot_confidence``
    overshoot: float | None = MAX_OVERSHOOT
    overshoot_confidence: float = MIN_WITHIN_SHARE


def _measure(
    test: RoutingSet, u_test: FloatArray, choice: IntArray, target: float, calibrated: bool,
    ref: int,
    scale: float | None,
    seen: FloatArray,
) -> Run:  # fmt: skip
    cheap = test.cheapest
    out = outcome(test.quality, test.cost, choice, ref)
    knobs = switch_points(u_test, seen, scale)
    curve = tradeoff_curve(u_test, test.quality, test.cost, ref, knobs, scale, seen)
    q_ref, q_weak = float(test.quality[:, ref].mean()), float(test.quality[:, cheap].mean())
    c_ref, c_weak = float(test.cost[:, ref].mean()), float(test.cost[:, cheap].mean())
    gap_pred = u_test[:, ref] - u_test[:, cheap]
    needs_large = test.quality[:, ref] > test.quality[:, cheap]
    return Run(
        saving=out.saving,
        drop=out.drop,
        large_share=out.reference_share,
        post_hoc=saving_at_drop(curve, q_ref, c_ref, target),
        apgr=apgr(curve.share, curve.quality, q_weak, q_ref) if q_ref > q_weak else math.nan,
        aiq=aiq(curve.cost, curve.quality, c_weak, c_ref) if c_ref > c_weak else math.nan,
        auc=auc(np.nan_to_num(gap_pred, neginf=-1e9, posinf=1e9), needs_large),
        calibrated=calibrated,
        n_test=test.n,
        only_ref=float(np.mean(needs_large)),
        only_cheap=float(np.mean(test.quality[:, cheap] > test.quality[:, ref])),
    )


def run_dataset(
    data: RoutingSet, settings: Settings, progress: Callable[[str], None] | None = None
) -> list[RouterResult]:
    """Every router (and the oracle) over ``settings.splits`` seeded splits."""
    results = {name: RouterResult(name) for name in (*settings.routers, "oracle")}
    ref = data.reference
    # label-free features, fitted once on every prompt's text (module docstring)
    t0 = time.perf_counter()
    lengths = np.array([len(p) for p in data.prompts], dtype=np.float64)
    x_all = (
        TfidfFeaturiser(max_features=settings.max_features, length_bins=settings.length_bins)
        .fit(data.prompts)
        .transform(data.prompts)
    )
    z_all = lsa(x_all, 64, settings.seed) if "uniroute" in settings.routers else x_all
    d_all = dense(DifficultyFeaturiser().transform(data.prompts))
    features: dict[str, FeatureMatrix] = {
        "uniroute": z_all,
        "boosted": d_all,
        "blend": sp.hstack([x_all, sp.csr_matrix(d_all)]).tocsr(),
    }
    text_columns = int(x_all.shape[1])
    if progress:
        progress(f"  features: {time.perf_counter() - t0:.1f} s")
    for k in range(settings.splits):
        seed = settings.seed + k
        split = seeded_split(
            data.n, seed, test=settings.test_share, calibrate=0.5 * (1 - settings.test_share)
        )
        dev_idx = np.sort(np.concatenate([split.train, split.calibrate]))
        dev, test = data.subset(dev_idx), data.subset(split.test)
        # what a query will cost, estimated from its prompt's length (known before answering)
        costs = LengthCost.fit(lengths[dev_idx], dev.cost)
        seen_dev, seen_test = costs.predict(lengths[dev_idx]), costs.predict(lengths[split.test])
        for name in settings.routers:
            t0 = time.perf_counter()
            feats = features.get(name, x_all)
            x_dev, x_test = feats[dev_idx], feats[split.test]

            def make(name: str = name, seed: int = seed) -> Router:
                return make_router(name, seed, text_columns)

            cf = cross_fit(make, x_dev, dev.quality, dev.cost, settings.folds, seed)
            cal = calibrate(
                cf.oof, dev.quality, dev.cost, settings.target_drop, settings.confidence,
                reference=ref, seed=seed, absolute=False if name == "random" else settings.absolute, decision_cost=seen_dev,
                horizon=len(split.test) if settings.predictive else None,
                overshoot=settings.overshoot, overshoot_confidence=settings.overshoot_confidence,
                overshoot_horizon=len(split.test),
            )  # fmt: skip
            u_test = cf.utility(x_test)
            choice = cal.choose(u_test, seen_test)
            run = _measure(
                test,
                u_test,
                choice,
                settings.target_drop,
                cal.lam is not None,
                ref,
                cal.scale,
                seen_test,
            )
            run.lam = cal.lam
            results[name].runs.append(run)
            if progress:
                progress(
                    f"  split {k + 1}/{settings.splits} {name}: {time.perf_counter() - t0:.1f} s"
                )
        # the oracle: the true quality as its utility, the knob just above 0
        results["oracle"].runs.append(
            _measure(
                test,
                test.quality,
                route(test.quality, test.cost, 0.0),
                settings.target_drop,
                True,
                ref,
                cost_scale(test.cost),
                test.cost,
            )
        )
    return list(results.values())


def _pct(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{100 * v:.1f}%"


def _bound_text(s: Settings) -> str:
    expected = (
        "its point estimate" if s.confidence == 0.5 else f"its {s.confidence:.0%} upper bound"
    )
    text = f"the expected drop ({expected}) within target"
    if s.overshoot is not None:
        text += (
            f", and the {s.overshoot_confidence:.0%} prediction bound of a test split's drop "
            f"within target + {100 * s.overshoot:.1f} pt"
        )
    return text + " (each at half the error rate per cost order)"


def render(name: str, data: RoutingSet, results: Sequence[RouterResult], settings: Settings) -> str:
    """The table of one dataset."""
    ref, cheap = data.reference, data.cheapest
    q = data.quality.mean(axis=0)
    c = data.cost.mean(axis=0)
    lines = [
        f"## {name}: {data.n} prompts; reference {data.models[ref]} (quality {q[ref]:.3f}, "
        f"{1e6 * c[ref]:.1f} uUSD/query), cheapest {data.models[cheap]} (quality {q[cheap]:.3f}, "
        f"{1e6 * c[cheap]:.1f} uUSD/query); {settings.splits} splits, {1 - settings.test_share:.0%} "
        f"development ({settings.folds}-fold cross-fit) / {settings.test_share:.0%} test; target drop "
        f"{100 * settings.target_drop:.1f} pt: {_bound_text(settings)}",
        "",
        "| router | saving | drop (pt) mean / worst | calib err (pt) | over+0.5 | large | post hoc | APGR | AIQ | AUC |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {_pct(r.mean('saving'))} ± {100 * r.std('saving'):.1f} "
            f"| {100 * r.mean('drop'):.2f} / {100 * r.worst_drop():.2f} "
            f"| {100 * (r.mean('drop') - settings.target_drop):+.2f} "
            f"| {r.over_share(settings.target_drop, MAX_OVERSHOOT):.0%} "
            f"| {_pct(r.mean('large_share'))} | {_pct(r.mean('post_hoc'))} "
            f"| {r.mean('apgr'):.3f} | {1e2 * r.mean('aiq'):.2f} | {r.mean('auc'):.3f} |"
        )
    lines.append("")
    lines.append("calibration error per split (test drop - target, pt; split seed order):")
    for r in results:
        if r.name == "oracle":
            continue
        errs = [100 * (run.drop - settings.target_drop) for run in r.runs]
        q = np.quantile(errs, [0.0, 0.5, 1.0]) if errs else np.full(3, math.nan)
        lines.append(
            f"  {r.name}: min {q[0]:+.2f} / median {q[1]:+.2f} / max {q[2]:+.2f}; "
            + " ".join(f"{e:+.2f}" for e in errs)
        )
    lines.append("")
    lines.append(
        "BEST-Route's (model, n samples) choice: not measured - this data has one answer per "
        "model and query, so there are no samples to choose n from."
    )
    return "\n".join(lines)


def target_lines(name: str, results: Sequence[RouterResult], settings: Settings) -> list[str]:
    """The targets of :data:`PRODUCT_ROUTER` on one dataset, with the shortfall of a miss."""
    by = {r.name: r for r in results}
    if PRODUCT_ROUTER not in by:
        return [f"  {name}: {PRODUCT_ROUTER} not run, targets not checked"]
    r = by[PRODUCT_ROUTER]
    saving = Threshold(f"{name} {PRODUCT_ROUTER} saving at the calibrated knob", TARGET_SAVING,
                       at_most=False, fmt="{:.1%}")  # fmt: skip
    drop = Threshold(
        f"{name} {PRODUCT_ROUTER} mean test drop", 100 * MAX_MEAN_DROP, "pt", fmt="{:.2f}"
    )
    within = Threshold(
        f"{name} {PRODUCT_ROUTER} splits with drop <= target + {100 * MAX_OVERSHOOT:.1f} pt",
        MIN_WITHIN_SHARE, at_most=False, fmt="{:.0%}",
    )  # fmt: skip
    within_share = 1.0 - r.over_share(settings.target_drop, MAX_OVERSHOOT)
    out = [
        saving.line(r.mean("saving")),
        drop.line(100 * r.mean("drop")),
        within.line(within_share, f"{len(r.runs)} splits"),
    ]
    if not within.passed(within_share):
        n_test = r.runs[0].n_test
        out.append(
            f"    {round((1 - within_share) * len(r.runs))} of {len(r.runs)} splits over: worst drop "
            f"{100 * r.worst_drop():.2f} pt on {n_test} test queries (one query lost = "
            f"{100 / n_test:.2f} pt). The bound is on the expected drop; a split this small "
            f"scatters around it: --predictive bounds the drop of a split of this size instead."
        )
    if not saving.passed(r.mean("saving")):
        best = max((x for x in results if x.name != "oracle"), key=lambda x: x.mean("saving"))
        top = max((x for x in results if x.name != "oracle"), key=lambda x: x.mean("post_hoc"))
        n_test = r.runs[0].n_test
        oracle = by.get("oracle")
        oracle_text = f" and the oracle's {_pct(oracle.mean('post_hoc'))}" if oracle else ""
        out.append(
            f"    shortfall {100 * (TARGET_SAVING - r.mean('saving')):.1f} points of saving "
            f"(best router here: {best.name}, {_pct(best.mean('saving'))}). Why: only the large "
            f"model is right on {_pct(r.mean('only_ref'))} of the queries and only the small one "
            f"on {_pct(r.mean('only_cheap'))}; the prompt features rank the first kind weakly "
            f"(AUC {r.mean('auc'):.3f}, 0.5 = chance). Upper bound from this signal: the best "
            f"ranking ({top.name}) with its threshold picked on the test labels (optimistic) saves "
            f"{_pct(top.mean('post_hoc'))}, against {PRODUCT_ROUTER}'s "
            f"{_pct(r.mean('post_hoc'))}{oracle_text}. The calibrated knob gives up "
            f"{_pct(r.mean('post_hoc') - r.mean('saving'))} more: on {n_test} test queries one "
            f"query lost is {100 / n_test:.2f} pt, so keeping 95% of splits within target + "
            f"{100 * MAX_OVERSHOOT:.1f} pt leaves room for few routed queries."
        )
    return out


def _price(text: str) -> tuple[str, tuple[float, float]]:
    try:
        model, rest = text.rsplit("=", 1)
        p_in, p_out = (float(v) for v in rest.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected MODEL=IN,OUT (USD per million tokens), got {text!r}"
        ) from None
    return model, (p_in, p_out)


def main(argv: Sequence[str] | None = None) -> int:
    """``llmfleet bench routing``: print each router's table per dataset and the targets."""
    parser = argparse.ArgumentParser(
        prog="llmfleet bench routing",
        description="Quality-aware model routers: cost saving at a target quality drop, "
        "APGR, AIQ, calibration error, over seeded splits (see the module docstring).",
    )
    default = Path(os.environ.get("LLMFLEET_ROUTING_DIR", DEFAULT_DATA))
    parser.add_argument(
        "--data", type=Path, default=default, help=f"a CSV file or folder (default {default})"
    )
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="the first split's seed")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--target-drop", type=float, default=100 * TARGET_DROP, help="points")
    parser.add_argument(
        "--confidence",
        type=float,
        default=None,
        help="of the expected drop's bound (default 0.5, the point estimate, with --bound split; "
        "0.9 with --bound expected)",
    )
    parser.add_argument(
        "--bound",
        choices=["split", "expected"],
        default="split",
        help="split: the mean drop on target and a 95%% prediction bound of a test split's drop "
        "within target + 0.5 pt (the benchmark's targets); expected: only an upper bound of the "
        "expected drop",
    )
    parser.add_argument(
        "--routers", default=",".join(ROUTERS), help=f"comma-separated ({','.join(ROUTERS)})"
    )
    parser.add_argument(
        "--price", type=_price, action="append", default=[], help="MODEL=IN,OUT USD per 1M tokens"
    )
    parser.add_argument(
        "--write-csv",
        type=Path,
        default=None,
        help="convert the data to the general schema and stop",
    )
    parser.add_argument(
        "--length-bins", type=int, default=0, help="one-hot prompt-length bins added to TF-IDF"
    )
    parser.add_argument(
        "--cost-order",
        choices=["auto", "absolute", "relative"],
        default="auto",
        help="decide on the estimated cost over a fixed scale, or relative per query, or "
        "whichever saves more on the calibration split (each tested at half the error rate)",
    )
    parser.add_argument(
        "--predictive",
        action="store_true",
        help="bound the drop measured on a test split of its size, not the expected drop",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    routers = tuple(r for r in args.routers.split(",") if r)
    for r in routers:
        if r not in ROUTERS:
            parser.error(f"unknown router {r!r} (choose from {', '.join(ROUTERS)})")
    prices = {**PRICES, **dict(args.price)}
    datasets = load_datasets(args.data, prices)
    if args.write_csv is not None:
        for name, data in datasets:
            out = (
                args.write_csv
                if len(datasets) == 1
                else args.write_csv.with_name(f"{args.write_csv.stem}-{name}.csv")
            )
            write_routing_csv(data, out)
            print(f"{name}: {data.n} prompts, {len(data.models)} models -> {out}")
        return 0
    settings = Settings(splits=args.splits, seed=args.seed, folds=args.folds, target_drop=args.target_drop / 100,
                        confidence=args.confidence if args.confidence is not None
                        else (0.5 if args.bound == "split" else 0.9),
                        overshoot=MAX_OVERSHOOT if args.bound == "split" else None,
                        routers=routers, length_bins=args.length_bins,
                        absolute=None if args.cost_order == "auto" else args.cost_order == "absolute",
                        predictive=args.predictive)  # fmt: skip
    targets: list[str] = []
    t0 = time.perf_counter()
    for name, data in datasets:
        results = run_dataset(
            data, settings, None if args.quiet else lambda s: print(s, flush=True)
        )
        print(render(name, data, results, settings), flush=True)
        print()
        targets += target_lines(name, results, settings)
    print(f"targets ({PRODUCT_ROUTER} router, {time.perf_counter() - t0:.0f} s):")
    print("\n".join(targets))
    return 0
