"""Demand as the planner sees it: history in, forecast out (pure data, no I/O).

A demand *flow* is one (model, origin region, tier). Rates are per second, averaged over
a step of ``step_seconds``; step ``i`` covers ``[start + i*step, start + (i+1)*step)``
in Unix seconds.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import Self

Method = Literal["arima", "seasonal", "naive", "oracle"]


class FlowKey(BaseModel):
    """One demand flow."""

    model_config = ConfigDict(frozen=True)

    model: str
    """LLMModel name."""
    origin: str
    """Region the requests come from."""
    tier: str
    """SLATier name."""


class DemandRates(BaseModel):
    """Per-step average rates of one flow."""

    model_config = ConfigDict(frozen=True)

    requests_per_s: tuple[float, ...]
    """Requests per second."""
    prompt_tokens_per_s: tuple[float, ...]
    """Prompt (input) tokens per second."""
    output_tokens_per_s: tuple[float, ...]
    """Generated (output) tokens per second."""

    @model_validator(mode="after")
    def _same_length(self) -> Self:
        n = len(self.requests_per_s)
        if len(self.prompt_tokens_per_s) != n or len(self.output_tokens_per_s) != n:
            raise ValueError("requests, prompt and output series must have the same length")
        if any(v < 0 for s in (self.requests_per_s, self.prompt_tokens_per_s, self.output_tokens_per_s) for v in s):
            raise ValueError("rates must be >= 0")
        return self

    def __len__(self) -> int:
        return len(self.requests_per_s)


class DemandHistory(BaseModel):
    """Observed demand of one flow (what Prometheus or the simulator saw)."""

    model_config = ConfigDict(frozen=True)

    key: FlowKey
    start: float
    """Unix time of the first step's start, seconds."""
    step_seconds: int = Field(gt=0)
    rates: DemandRates


class ForecastError(BaseModel):
    """Rolling-origin backtest error of a method on a series."""

    model_config = ConfigDict(frozen=True)

    method: Method
    mape: float = Field(ge=0)
    """Mean absolute percentage error of the point forecast (steps with actual > 0)."""
    pinball: float = Field(ge=0)
    """Mean pinball loss of the upper-quantile forecast, in the series' units."""
    folds: int = Field(ge=0)


class DemandForecast(BaseModel):
    """Forecast of one flow over the planning horizon."""

    model_config = ConfigDict(frozen=True)

    key: FlowKey
    start: float
    """Unix time of the first forecast step's start, seconds."""
    step_seconds: int = Field(gt=0)
    point: DemandRates
    """Expected rates per step."""
    upper: DemandRates
    """Rates at ``quantile`` per step (what interactive tiers are provisioned for)."""
    quantile: float = Field(gt=0, lt=1)
    method: Method
    """The method that produced this forecast."""
    backtest: tuple[ForecastError, ...] = ()
    """Backtest errors of every candidate method (the chosen one included)."""

    @model_validator(mode="after")
    def _same_horizon(self) -> Self:
        if len(self.point) != len(self.upper):
            raise ValueError("point and upper forecasts must cover the same steps")
        return self

    @property
    def steps(self) -> int:
        return len(self.point)
