"""Demand as the planner sees it: history in, forecast out (pure data, no I/O).

A demand *flow* is one (model, origin region, tier). Rates are per second, averaged over
a step of ``step_seconds``; step ``i`` covers ``[start + i*step, start + (i+1)*step)``
in Unix seconds.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

Method = Literal["arima", "seasonal", "naive", "oracle"]
Series = Literal["requests", "prompt_tokens", "output_tokens"]
"""The three rates of a flow, named as the fields of :class:`DemandRates` without ``_per_s``."""


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
        if any(
            v < 0
            for s in (self.requests_per_s, self.prompt_tokens_per_s, self.output_tokens_per_s)
            for v in s
        ):
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
    peaks: DemandRates | None = None
    """Per step, the rates of its busiest window (a few minutes; what a burst inside the
    step reached); None when the source reads no peaks. Same steps as ``rates``."""

    @model_validator(mode="after")
    def _peaks_cover_the_steps(self) -> Self:
        if self.peaks is not None and len(self.peaks) != len(self.rates):
            raise ValueError(
                f"peaks cover {len(self.peaks)} steps, rates {len(self.rates)}: they must match"
            )
        return self


class ForecastError(BaseModel):
    """Rolling-origin backtest error of a method on a series."""

    model_config = ConfigDict(frozen=True)

    method: Method
    mape: float = Field(ge=0)
    """Mean absolute percentage error of the point forecast, in percent (steps with actual > 0;
    0 when no backtest step had demand)."""
    pinball: float = Field(ge=0)
    """Mean pinball loss of the upper-quantile forecast, in the series' units."""
    folds: int = Field(ge=0)
    series: Series = "prompt_tokens"
    """Which rate of the flow these errors are for."""
    wape: float | None = Field(default=None, ge=0)
    """Weighted absolute percentage error sum|a - p| / sum(a), in percent (robust to bursts)."""
    coverage: float | None = Field(default=None, ge=0, le=1)
    """Share of backtest actuals at or below the upper forecast (calibrated: about the quantile)."""
    horizon_steps: int | None = Field(default=None, ge=0)
    """Steps ahead each fold was scored on (shorter than the horizon for short histories)."""


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

    def error(
        self, method: Method | None = None, series: Series = "prompt_tokens"
    ) -> ForecastError | None:
        """Backtest error of ``method`` (default: the chosen one) on ``series``, if measured."""
        wanted = self.method if method is None else method
        for e in self.backtest:
            if e.method == wanted and e.series == series:
                return e
        return None
