"""Forecasting beside the networks: statistical baselines (naive, seasonal naive, ETS, ARIMA) and the shared figures."""

from bigdl.forecast._baselines import MODELS, baselines

__all__ = ["baselines", "MODELS"]
