"""Prompt featurisers that need no download at run time.

A :class:`Featuriser` turns prompts into a feature matrix (rows = prompts) that the routers
of :mod:`llmfleet.routing.models.routers` read. ``fit`` looks at texts only, never at labels,
so it may be fitted on every prompt of a development set.

* :class:`TfidfFeaturiser` — scikit-learn TF-IDF over word 1-2-grams (``sublinear_tf``:
  ``1 + log tf``; ``idf = 1 + log((1 + n) / (1 + df))``; rows L2-normalised), optionally
  stacked with character 2-4-grams (which pick up formulas, numbers and code) and with a
  one-hot of the prompt's length bin (``length_bins`` quantiles of ``log(1 + chars)``: the
  L2-normalised TF-IDF rows have lost the length, which predicts difficulty: a longer maths
  word problem has more steps to get wrong);
* :class:`HashingFeaturiser` — the same word n-grams hashed into ``2**bits`` columns
  (stateless: nothing to fit or ship);
* :class:`DifficultyFeaturiser` — a few dense, hand-made signals of how hard a prompt is
  (:data:`DIFFICULTY_FEATURES`: its length in characters, words and sentences, how many
  numbers it holds, their largest and mean magnitude, decimals, percentages, money, the
  operation words of maths word problems, formula symbols, lines, the mean length of a
  multiple-choice option); stateless and deterministic (a pure function of the text), for
  tree models (:class:`~llmfleet.routing.models.routers.BoostedRouter`), which find the
  thresholds and interactions (a long problem with many numbers) a linear model cannot.

Not here: WordLlama (its PyPI wheel does ship its 256-d embeddings and tokenizer, and loads
them with downloads disabled when ``cache_dir`` is the package folder). On RouteLLM's MMLU a
logistic regression on its mean embeddings ranked the queries worse than on TF-IDF (AUC of
"only the large model is right" 0.62 against 0.66, one split), so it earns no dependency.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Protocol, TypeAlias

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer

#: A feature matrix: a scipy CSR matrix (TF-IDF, hashing) or a dense float array (embeddings).
FeatureMatrix: TypeAlias = "sp.csr_matrix | npt.NDArray[np.float64]"


class Featuriser(Protocol):
    """Prompts -> feature rows; ``fit`` sees texts only."""

    def fit(self, texts: Sequence[str]) -> Featuriser: ...

    def transform(self, texts: Sequence[str]) -> FeatureMatrix: ...


class TfidfFeaturiser:
    """TF-IDF of word 1-2-grams (and, with ``chars``, character 2-4-grams), fitted on texts."""

    def __init__(
        self, max_features: int = 50_000, min_df: int = 2, chars: bool = False, length_bins: int = 0
    ) -> None:
        self.max_features = max_features
        self.min_df = min_df
        self.chars = chars
        self.length_bins = length_bins
        self._edges: npt.NDArray[np.float64] = np.zeros(0)
        self._word = TfidfVectorizer(
            ngram_range=(1, 2), min_df=min_df, sublinear_tf=True, max_features=max_features
        )
        self._char = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=(2, 4),
            min_df=min_df,
            sublinear_tf=True,
            max_features=max_features,
        )

    def fit(self, texts: Sequence[str]) -> TfidfFeaturiser:
        min_df = self.min_df if len(texts) >= 4 * self.min_df else 1
        self._word.set_params(min_df=min_df)
        self._char.set_params(min_df=min_df)
        self._word.fit(list(texts))
        if self.chars:
            self._char.fit(list(texts))
        if self.length_bins > 1:
            logs = np.log1p([len(t) for t in texts])
            qs = np.linspace(0, 1, self.length_bins + 1)[1:-1]
            self._edges = np.unique(np.quantile(logs, qs)).astype(np.float64)
        return self

    def _length_block(self, texts: Sequence[str]) -> sp.csr_matrix:
        """One-hot of the prompt's length bin (quantiles of ``log(1 + chars)`` at fit)."""
        logs = np.log1p([len(t) for t in texts])
        col = np.searchsorted(self._edges, logs, side="right")
        n = len(texts)
        block: sp.csr_matrix = sp.csr_matrix(
            (np.ones(n), (np.arange(n), col)), shape=(n, self._edges.size + 1)
        )
        return block

    def transform(self, texts: Sequence[str]) -> FeatureMatrix:
        text = [self._word.transform(list(texts))]
        if self.chars:
            text.append(self._char.transform(list(texts)))
        # the text blocks share a unit norm; the length one-hot is a block of its own
        blocks = [b / np.sqrt(len(text)) for b in text] if len(text) > 1 else text
        if self.length_bins > 1:
            blocks.append(self._length_block(texts))
        if len(blocks) == 1:
            only: sp.csr_matrix = blocks[0]
            return only
        stacked: sp.csr_matrix = sp.hstack(blocks).tocsr()
        return stacked


class HashingFeaturiser:
    """Word 1-2-grams hashed into ``2**bits`` columns, rows L2-normalised; nothing to fit."""

    def __init__(self, bits: int = 18) -> None:
        self._vec = HashingVectorizer(
            ngram_range=(1, 2), n_features=2**bits, alternate_sign=False, norm="l2"
        )

    def fit(self, texts: Sequence[str]) -> HashingFeaturiser:
        return self

    def transform(self, texts: Sequence[str]) -> FeatureMatrix:
        out: sp.csr_matrix = self._vec.transform(list(texts))
        return out


#: The columns of :class:`DifficultyFeaturiser`, in order.
DIFFICULTY_FEATURES = (
    "log_chars",
    "log_words",
    "sentences",
    "numbers",
    "distinct_numbers",
    "log_max_number",
    "mean_log_number",
    "decimals",
    "percents",
    "money",
    "operation_words",
    "formula_symbols",
    "digit_share",
    "lines",
    "log_option_chars",
)

_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
_OPTION = re.compile(r"^[A-D]\.\s*(.*)$", re.MULTILINE)
#: Words that each add a step to a maths word problem (counted as whole words, lower case).
_OPERATION_WORDS = frozenset(
    [
        "percent",
        "times",
        "half",
        "twice",
        "double",
        "triple",
        "each",
        "per",
        "every",
        "total",
        "left",
        "remain",
        "remaining",
        "more",
        "less",
        "fewer",
        "than",
        "fraction",
        "average",
        "ratio",
        "rate",
        "profit",
        "discount",
        "tax",
        "split",
        "share",
        "difference",
        "sum",
        "product",
        "quarter",
        "third",
    ]
)
_FORMULA = frozenset("=+-*/^\\<>()[]{}|")


def difficulty_row(text: str) -> list[float]:
    """The :data:`DIFFICULTY_FEATURES` of one prompt (a pure function of ``text``)."""
    words = text.split()
    numbers = _NUMBER.findall(text)
    values = [float(n.replace(",", "")) for n in numbers]
    logs = [math.log1p(v) for v in values]
    options = _OPTION.findall(text)
    lowered = [w.strip(".,;:!?$%()\"'").lower() for w in words]
    return [
        math.log1p(len(text)),
        math.log1p(len(words)),
        float(len(re.findall(r"[.!?](?:\s|$)", text))),
        float(len(numbers)),
        float(len(set(numbers))),
        max(logs) if logs else 0.0,
        sum(logs) / len(logs) if logs else 0.0,
        float(sum("." in n for n in numbers)),
        float(text.count("%") + sum(w == "percent" for w in lowered)),
        float(text.count("$")),
        float(sum(w in _OPERATION_WORDS for w in lowered)),
        float(sum(c in _FORMULA for c in text)),
        sum(c.isdigit() for c in text) / len(text) if text else 0.0,
        float(text.count("\n")),
        math.log1p(sum(len(o) for o in options) / len(options)) if options else 0.0,
    ]


class DifficultyFeaturiser:
    """Dense :data:`DIFFICULTY_FEATURES` per prompt; nothing to fit (module docstring)."""

    names = DIFFICULTY_FEATURES

    def fit(self, texts: Sequence[str]) -> DifficultyFeaturiser:
        return self

    def transform(self, texts: Sequence[str]) -> FeatureMatrix:
        rows = [difficulty_row(t) for t in texts]
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(DIFFICULTY_FEATURES))


def dense(x: FeatureMatrix) -> npt.NDArray[np.float64]:
    """``x`` as a dense float64 array."""
    if isinstance(x, np.ndarray):
        return np.asarray(x, dtype=np.float64)
    return np.asarray(x.toarray(), dtype=np.float64)


def lsa(x: FeatureMatrix, dims: int = 64, seed: int = 0) -> npt.NDArray[np.float64]:
    """Latent semantic analysis: ``x`` projected on its top ``dims`` right singular vectors
    (truncated SVD, randomised), rows L2-normalised — the dense prompt embedding that
    :class:`~llmfleet.routing.models.routers.ClusterRouter` clusters. Label-free."""
    dims = max(1, min(dims, int(x.shape[1]) - 1, int(x.shape[0]) - 1))
    svd = TruncatedSVD(n_components=dims, random_state=seed)
    z = np.asarray(svd.fit_transform(x), dtype=np.float64)
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    return np.asarray(z / np.where(norm > 0, norm, 1.0), dtype=np.float64)
