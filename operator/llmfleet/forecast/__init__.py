"""Demand forecasting: history in, point + upper-quantile forecast out (pure)."""
