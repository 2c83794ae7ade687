"""Quality-aware model routing (pure): which model answers each query, for a quality target.

After Hybrid LLM (arXiv 2404.14618), BEST-Route (arXiv 2506.22716) and Universal Model
Routing / UniRoute (arXiv 2502.08773). The pieces, each a module:

* :mod:`.data` — :class:`RoutingSet` (prompts x models quality and cost), seeded splits;
* :mod:`.features` — featurisers with nothing to download (TF-IDF, hashing, hand-made
  difficulty signals);
* :mod:`.routers` — random, Hybrid LLM's "small is good enough", per-model quality (linear on
  TF-IDF, boosted trees on difficulty signals, their blend), UniRoute
  cluster errors (a new model from a small representative set): prompts -> utility per model;
* :mod:`.crossfit` — out-of-fold utilities for calibration, a fold ensemble for new queries;
* :mod:`.policy` — the run-time knob ``lambda`` and its calibration for a target drop with a
  bootstrap upper confidence bound (fixed-sequence testing);
* :mod:`.metrics` — cost-quality curve, APGR, AIQ, saving at a drop, AUC;
* :mod:`.best_route` — BEST-Route's (model, n samples) choice on a declared sample set:
  each (model, n) becomes an option column that the same routers and knob choose from.

No I/O: the CSV readers and the benchmark live in ``llmfleet_bench.routing``.
"""

from __future__ import annotations

from llmfleet.routing.models.best_route import SampleSet, best_of_n_options
from llmfleet.routing.models.crossfit import CrossFit, cross_fit
from llmfleet.routing.models.data import RoutingSet, Split, kfold, seeded_split
from llmfleet.routing.models.features import (
    DifficultyFeaturiser,
    Featuriser,
    HashingFeaturiser,
    TfidfFeaturiser,
)
from llmfleet.routing.models.metrics import (
    Curve,
    Outcome,
    aiq,
    apgr,
    auc,
    outcome,
    saving_at_drop,
    tradeoff_curve,
)
from llmfleet.routing.models.policy import (
    Calibration,
    LengthCost,
    calibrate,
    cost_scale,
    relative_cost,
    route,
    switch_points,
)
from llmfleet.routing.models.routers import (
    ROUTERS,
    BlendRouter,
    BoostedRouter,
    ClusterRouter,
    GoodEnoughRouter,
    QualityRouter,
    RandomRouter,
    Router,
    make_router,
)

__all__ = [
    "ROUTERS",
    "BlendRouter",
    "BoostedRouter",
    "Calibration",
    "ClusterRouter",
    "CrossFit",
    "Curve",
    "DifficultyFeaturiser",
    "Featuriser",
    "GoodEnoughRouter",
    "HashingFeaturiser",
    "LengthCost",
    "Outcome",
    "QualityRouter",
    "RandomRouter",
    "Router",
    "RoutingSet",
    "SampleSet",
    "Split",
    "TfidfFeaturiser",
    "aiq",
    "apgr",
    "auc",
    "best_of_n_options",
    "calibrate",
    "cost_scale",
    "cross_fit",
    "kfold",
    "make_router",
    "outcome",
    "relative_cost",
    "route",
    "saving_at_drop",
    "seeded_split",
    "switch_points",
    "tradeoff_curve",
]
