"""Demand forecasting: history in, point + upper-quantile forecast out (pure).

Entry points: :func:`forecast` (one flow) and :func:`forecast_all` (many flows). Methods:
``arima`` (SageServe's ARIMA(3,1,2)), ``seasonal`` (daily/weekly seasonal naive with a level
correction), ``naive`` (last value); ``auto`` picks per flow by rolling-origin backtest.
"""

from llmfleet.forecast.forecaster import MethodChoice, forecast, forecast_all
from llmfleet.forecast.types import (
    DemandForecast,
    DemandHistory,
    DemandRates,
    FlowKey,
    ForecastError,
    Method,
    Series,
)

__all__ = [
    "DemandForecast",
    "DemandHistory",
    "DemandRates",
    "FlowKey",
    "ForecastError",
    "Method",
    "MethodChoice",
    "Series",
    "forecast",
    "forecast_all",
]
