"""Probabilistic forecasts: the quantile (pinball) loss over several quantiles at once.

A quantile model (``StackedLSTM(quantiles=[0.1, 0.5, 0.9])``) gives its
outputs a last axis of one value per quantile; :class:`QuantileLoss` scores
them against targets without that axis.  The point forecast the Trainer's
regression figures, MASE and recursive forecasts use is the quantile
nearest 0.5 (:func:`bigdl.forecast._metrics.median_index`).
"""

from __future__ import annotations

import torch
from torch import nn

from bigdl._validation import QUANTILES, check_params

__all__ = ["QuantileLoss"]


class QuantileLoss(nn.Module):
    """The mean pinball loss of several quantile forecasts: ``max(q * e, (q - 1) * e)``, ``e = target - forecast``.

    Minimising it makes each output the ``q`` quantile of the target given
    the inputs (Koenker and Bassett, 1978); at ``q = 0.5`` it is half the
    absolute error.

    Parameters
    ----------
    quantiles : list of float
        Increasing, each in (0, 1); the outputs' last axis, in this order.

    Raises
    ------
    ParameterError
        Quantiles outside (0, 1), repeated or not increasing.

    Examples
    --------
    >>> loss = QuantileLoss([0.1, 0.5, 0.9])
    >>> float(loss(torch.zeros(2, 3, 3), torch.ones(2, 3)))  # doctest: +ELLIPSIS
    0.5...
    """

    def __init__(self, quantiles: list[float]):
        super().__init__()
        quantiles = list(quantiles) if isinstance(quantiles, (list, tuple)) else quantiles
        check_params("QuantileLoss", {"quantiles": quantiles}, {"quantiles": QUANTILES})
        self.quantiles = [float(value) for value in quantiles]

    def forward(self, forecast: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The mean pinball loss over every value and quantile.

        Parameters
        ----------
        forecast : torch.Tensor of shape (..., n_quantiles)
        target : torch.Tensor of the shape of ``forecast`` without its last axis

        Returns
        -------
        torch.Tensor
            A scalar.
        """
        if forecast.shape[:-1] != target.shape or forecast.shape[-1] != len(self.quantiles):
            from bigdl.errors import SchemaError

            raise SchemaError(f"QuantileLoss({self.quantiles}) needs forecasts of the targets' shape "
                              f"{tuple(target.shape)} plus one value per quantile ({len(self.quantiles)}); got "
                              f"{tuple(forecast.shape)}. Build the model with quantiles={self.quantiles}.")
        error = target.unsqueeze(-1) - forecast
        levels = torch.tensor(self.quantiles, dtype=forecast.dtype, device=forecast.device)
        return torch.maximum(levels * error, (levels - 1) * error).mean()

    def extra_repr(self) -> str:
        return f"quantiles={self.quantiles}"
