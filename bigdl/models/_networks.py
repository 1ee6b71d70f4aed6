"""The reference networks of the use cases, as plain ``torch.nn.Module``s."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Sequence

import torch
from torch import nn

from bigdl._validation import QUANTILES, Interval, Options, Predicate, check_params
from bigdl.errors import ParameterError

__all__ = ["MLP", "CNN", "StackedLSTM"]

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "identity": nn.Identity}


_SIZE = Interval(int, 1, None)
_DROPOUT = Interval(float, 0, 1, closed="left")
_WIDTHS = Predicate(lambda widths: isinstance(widths, list) and all(_SIZE.is_satisfied_by(width) for width in widths),
                    "a sequence of ints in the range [1, inf)")
PARAMETERS = {
    "in_features": [_SIZE], "out_features": [_SIZE], "hidden": [_WIDTHS], "activation": [Options(ACTIVATIONS)],
    "dropout": [_DROPOUT], "in_channels": [_SIZE], "n_classes": [_SIZE], "variant": [Options(("classic", "deep"))],
    "input_size": [_SIZE], "layers": [_SIZE], "horizon": [_SIZE],
}


def _widths(hidden):
    """``hidden`` as a list to check (an iterator is read once), or as given if it is no sequence."""
    return list(hidden) if isinstance(hidden, Iterable) and not isinstance(hidden, (str, bytes)) else hidden


class MLP(nn.Module):
    """A multi-layer perceptron: ``in -> hidden... -> out`` with an activation between layers.

    Covers the 2-3-1 regression, 784-64-64-10 and 100-64-64-10 classification
    networks of the use cases.  The output layer has no activation: pair it
    with ``cross_entropy`` (logits) or ``mse``.

    Parameters
    ----------
    in_features : int
        Inputs per sample (``ds.n_features``).
    hidden : sequence of int, default (64, 64)
        Width of each hidden layer; empty for a linear model.
    out_features : int, default 1
        Outputs (``ds.n_classes`` for classification, 1 for regression).
    activation : {"relu", "tanh", "sigmoid", "gelu", "identity"}, default "relu"
    dropout : float, default 0.0
        Dropout after each hidden activation.

    Raises
    ------
    ParameterError
        A size that is not an int >= 1, an unknown activation, or a dropout outside [0, 1).

    Examples
    --------
    >>> MLP(2, [3], 1)
    MLP(in_features=2, hidden=[3], out_features=1)
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (64, 64), out_features: int = 1,
                 activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        hidden = _widths(hidden)
        check_params("MLP", {"in_features": in_features, "hidden": hidden, "out_features": out_features,
                             "activation": activation, "dropout": dropout}, PARAMETERS)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.hidden = [int(width) for width in hidden]
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        width = in_features
        for size in self.hidden:
            layers += [nn.Linear(width, size), act()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, out_features))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs (logits or values) of a batch; inputs are flattened after the batch axis.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, in_features) or (batch, ...)

        Returns
        -------
        torch.Tensor of shape (batch, out_features)
        """
        return self.layers(x.flatten(1))

    def __repr__(self) -> str:
        return f"MLP(in_features={self.in_features}, hidden={self.hidden}, out_features={self.out_features})"


class CNN(nn.Module):
    """A small image classifier.

    ``variant="classic"``: Conv 32 -> Conv 64 -> MaxPool -> Dropout 0.25 ->
    Dense 128 -> Dropout 0.5 -> Dense classes (the Keras MNIST network).
    ``variant="deep"``: three conv layers 32/64/64 with pooling, then Dense 64.

    Parameters
    ----------
    in_channels : int
        1 for grayscale, 3 for RGB.
    n_classes : int
    image_size : (int, int)
        Height and width of the stored images.
    variant : {"classic", "deep"}, default "classic"

    Raises
    ------
    ParameterError
        A size that is not an int >= 1, an unknown variant, or an image_size too small for the variant.
    """

    def __init__(self, in_channels: int, n_classes: int, image_size: tuple[int, int] = (28, 28),
                 variant: str = "classic"):
        super().__init__()
        check_params("CNN", {"in_channels": in_channels, "n_classes": n_classes, "variant": variant}, PARAMETERS)
        height, width = image_size
        smallest = {"classic": 6, "deep": 4}[variant]
        if height < smallest or width < smallest:
            raise ParameterError(f"The 'image_size' parameter of CNN is too small for variant {variant!r}: it must "
                                 f"be at least ({smallest}, {smallest}). Got {image_size!r} instead.")
        if variant == "classic":
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, 32, 3), nn.ReLU(),
                nn.Conv2d(32, 64, 3), nn.ReLU(),
                nn.MaxPool2d(2), nn.Dropout(0.25),
            )
            flat = 64 * ((height - 4) // 2) * ((width - 4) // 2)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, 128), nn.ReLU(), nn.Dropout(0.5),
                                      nn.Linear(128, n_classes))
        else:  # "deep"
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            )
            flat = 64 * (height // 4) * (width // 4)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, 64), nn.ReLU(), nn.Linear(64, n_classes))
        self.in_channels, self.n_classes, self.image_size, self.variant = in_channels, n_classes, image_size, variant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of a batch of images.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, in_channels, height, width)

        Returns
        -------
        torch.Tensor of shape (batch, n_classes)
        """
        return self.head(self.features(x))


class StackedLSTM(nn.Module):
    """Stacked LSTM forecaster: a window of ``input_size`` channels -> ``horizon`` x ``out_features``.

    Parameters
    ----------
    input_size : int
        Channels per time step.
    hidden : int, default 64
        Units per LSTM layer.
    layers : int, default 3
        Stacked LSTM layers.
    out_features : int, default 1
        Target channels forecast per step.
    horizon : int, default 1
        Steps forecast.
    dropout : float, default 0.0
        Dropout between LSTM layers.
    residual : bool, default False
        Forecast changes from the last input step: the window is shifted by
        its last value (per channel) before the LSTM, and the last value of each
        target channel is added back to the forecast.  A trending series then
        never leaves the range the network was trained on.
    target_channels : list of int, optional
        The input channels the outputs forecast, with ``residual=True``
        (a sequence store's targets are ``[ds.feature_names.index(name) for
        name in ds.window["targets"]]``; :meth:`for_store` fills it in).
        Left out, it is ``0 .. out_features - 1``, and the Trainer refuses
        to train a residual model on a store whose targets are other
        channels (it would add the wrong channel's last value).
    quantiles : list of float, optional
        Forecast these quantiles of each target step (increasing, in (0,
        1)), for probabilistic forecasts: the outputs get a last axis of one
        value per quantile, trained with
        :class:`~bigdl.train.QuantileLoss` (the Trainer's default loss for
        such a model).  ``Trainer.predict`` and ``Trainer.forecast`` give
        them a ``quantile`` dimension; point figures use the quantile
        nearest 0.5.
    decoder : dict, optional
        The windows have a decoder part (a store ingested with
        ``known_future=`` or ``calendar=``; :meth:`for_store` fills this in
        from ``ds.view.decoder_columns()``): ``{"values": [...], "known":
        [...]}``, the input columns holding the series' channels and those
        known in the future.  The LSTM then runs over the whole ``window +
        horizon`` steps (the decoder steps carry the known-future channels,
        the calendar features and an indicator), and each forecast step is
        read from the LSTM's output at that step (a shared linear head),
        not from the last input step's.  With ``residual=True`` the shift
        by the last input step applies to the value channels, and in the
        decoder part to the known ones only.

    Raises
    ------
    ParameterError
        A size that is not an int >= 1, a dropout outside [0, 1), or target_channels that do not fit.

    Examples
    --------
    >>> model = StackedLSTM.for_store(ds, hidden=64, layers=3, residual=True)  # doctest: +SKIP
    """

    def __init__(self, input_size: int, hidden: int = 64, layers: int = 3, out_features: int = 1,
                 horizon: int = 1, dropout: float = 0.0, residual: bool = False,
                 target_channels: list[int] | None = None, quantiles: list[float] | None = None,
                 decoder: dict | None = None):
        super().__init__()
        quantiles = list(quantiles) if isinstance(quantiles, tuple) else quantiles
        check_params("StackedLSTM", {"quantiles": quantiles}, {"quantiles": [*QUANTILES, None]})
        self.quantiles = None if quantiles is None else [float(value) for value in quantiles]
        n_outputs = 1 if quantiles is None else len(quantiles)
        check_params("StackedLSTM", {"input_size": input_size, "hidden": hidden, "layers": layers,
                                     "out_features": out_features, "horizon": horizon, "dropout": dropout},
                     {**PARAMETERS, "hidden": [_SIZE]})  # one width: every layer's units
        self.lstm = nn.LSTM(input_size, hidden, num_layers=layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        if decoder is not None and not (isinstance(decoder, dict) and {"values", "known"} <= set(decoder)):
            raise ParameterError("The 'decoder' parameter of StackedLSTM must be a dict with 'values' and 'known' "
                                 f"column lists (ds.view.decoder_columns()). Got {decoder!r} instead.")
        self.decoder = None if decoder is None else {"values": [int(c) for c in decoder["values"]],
                                                     "known": [int(c) for c in decoder["known"]]}
        self.head = nn.Linear(hidden, (1 if decoder else horizon) * out_features * n_outputs)
        self.input_size, self.horizon, self.out_features = input_size, horizon, out_features
        channels = list(range(out_features)) if target_channels is None else [int(c) for c in target_channels]
        if (residual or target_channels is not None) and (
                len(channels) != out_features or not all(0 <= c < input_size for c in channels)):
            raise ParameterError(f"The 'target_channels' parameter of StackedLSTM must list {out_features} input "
                                 f"channels in [0, {input_size}). Got {target_channels!r} instead.")
        self.residual, self.target_channels = bool(residual), channels
        self.target_channels_given = target_channels is not None

    @classmethod
    def for_store(cls, ds, **options) -> "StackedLSTM":
        """A forecaster shaped for a sequence store: its channels, targets, horizon and target channels.

        Parameters
        ----------
        ds : Dataset
            A sequence store (its default window spec).
        **options
            ``hidden``, ``layers``, ``dropout``, ``residual``, or overrides of
            ``input_size``, ``out_features``, ``horizon``, ``target_channels``.

        Returns
        -------
        StackedLSTM
        """
        targets = [ds.feature_names.index(name) for name in ds.window["targets"]]
        view = ds.view
        settings = {"input_size": ds.sample_shape[-1], "out_features": len(targets), "horizon": ds.window["horizon"],
                    "target_channels": targets}
        if getattr(view, "decoder", False):
            settings["decoder"] = view.decoder_columns()
        settings.update(options)
        return cls(**settings)

    def check_store(self, ds) -> None:
        """Refuse a store whose targets are not the channels this model adds back (``residual=True``).

        Called by the Trainer before training or evaluating.

        Parameters
        ----------
        ds : Dataset

        Raises
        ------
        SchemaError
            A residual model whose ``target_channels`` are not the store's target channels.
        """
        window = getattr(ds, "window", None)
        if not self.residual or not window or "targets" not in window:
            return
        from bigdl.errors import SchemaError

        names = list(ds.feature_names)
        targets = [names.index(name) for name in window["targets"]]
        if targets == self.target_channels:
            return
        if len(targets) != self.out_features:
            return  # the Trainer's shape check says what is wrong
        how = ("was given target_channels=" + repr(self.target_channels)) if self.target_channels_given else (
            f"was built without target_channels, so it adds back the last value of channel(s) "
            f"{self.target_channels} ({[names[c] for c in self.target_channels if c < len(names)]})")
        raise SchemaError(
            f"StackedLSTM(residual=True) {how}, but the store's targets {window['targets']} are channel(s) "
            f"{targets}. Pass target_channels={targets}, or build it with StackedLSTM.for_store(ds, ...).")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The forecast of a batch of windows.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, window, input_size)

        Returns
        -------
        torch.Tensor
            ``(batch, horizon)`` for one output, else ``(batch, horizon,
            out_features)``; with ``quantiles``, one more last axis of one
            value per quantile.
        """
        n_outputs = 1 if self.quantiles is None else len(self.quantiles)
        if self.decoder is not None:
            window = x.shape[1] - self.horizon
            last = x[:, window - 1:window, :]
            if self.residual:
                encoder, known = torch.zeros_like(last), torch.zeros_like(last)
                encoder[..., self.decoder["values"]] = last[..., self.decoder["values"]]
                known[..., self.decoder["known"]] = last[..., self.decoder["known"]]
                x = x - torch.cat([encoder.expand(-1, window, -1), known.expand(-1, self.horizon, -1)], dim=1)
            output, _ = self.lstm(x)
            forecast = self.head(output[:, window:]).view(x.shape[0], self.horizon, self.out_features, n_outputs)
        else:
            last = x[:, -1:, :]
            output, _ = self.lstm(x - last if self.residual else x)
            forecast = self.head(output[:, -1]).view(x.shape[0], self.horizon, self.out_features, n_outputs)
        if self.residual:
            forecast = forecast + last[:, :, self.target_channels, None]
        if self.quantiles is None:
            forecast = forecast.squeeze(-1)
        return forecast.squeeze(2) if self.out_features == 1 else forecast
