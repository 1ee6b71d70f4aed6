"""Reference networks: output shapes of the use cases' layouts, and parameter errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bigdl.errors import SchemaError
from bigdl.models import CNN, MLP, StackedLSTM


def linear_shapes(model: nn.Module) -> list[tuple[int, int]]:
    return [(layer.in_features, layer.out_features) for layer in model.modules() if isinstance(layer, nn.Linear)]


# ---------------------------------------------------------------- MLP
@pytest.mark.parametrize("in_features,hidden,out_features", [
    (2, [3], 1),            # the 2-3-1 regression network
    (784, [64, 64], 10),    # MNIST as flat pixels
    (100, [64, 64], 10),
    (5, [], 3),             # no hidden layer: a linear model
])
def test_mlp_layers_and_output_shape(in_features, hidden, out_features):
    model = MLP(in_features, hidden, out_features)
    widths = [in_features, *hidden, out_features]
    assert linear_shapes(model) == list(zip(widths[:-1], widths[1:]))
    assert sum(parameter.numel() for parameter in model.parameters()) == sum(
        (a + 1) * b for a, b in zip(widths[:-1], widths[1:]))
    assert model(torch.randn(7, in_features)).shape == (7, out_features)


def test_mlp_flattens_images():
    model = MLP(784, [64, 64], 10)
    images = torch.randn(4, 1, 28, 28)
    output = model(images)
    assert output.shape == (4, 10)
    torch.testing.assert_close(output, model(images.reshape(4, 784)))


def test_mlp_activation_and_dropout():
    model = MLP(4, [8, 8], 2, activation="tanh", dropout=0.3)
    assert sum(isinstance(layer, nn.Tanh) for layer in model.modules()) == 2
    assert sum(isinstance(layer, nn.Dropout) for layer in model.modules()) == 2
    assert not any(isinstance(layer, nn.ReLU) for layer in model.modules())
    assert not any(isinstance(layer, nn.Dropout) for layer in MLP(4, [8], 2).modules())
    model.eval()
    x = torch.randn(3, 4)
    torch.testing.assert_close(model(x), model(x))  # no dropout at evaluation


def test_mlp_repr():
    assert repr(MLP(2, [3], 1)) == "MLP(in_features=2, hidden=[3], out_features=1)"


@pytest.mark.parametrize("arguments,options,named", [
    ((0,), {}, "in_features"),
    ((2.0,), {}, "in_features"),
    ((True,), {}, "in_features"),
    ((2, [3, 0]), {}, "hidden"),
    ((2, [3]), {"out_features": 0}, "out_features"),
    ((2, [3]), {"activation": "swish"}, "activation"),
    ((2, [3]), {"dropout": 1.0}, "dropout"),
    ((2, [3]), {"dropout": -0.1}, "dropout"),
], ids=lambda value: None if isinstance(value, (tuple, dict)) else str(value))
def test_mlp_parameter_errors(arguments, options, named):
    with pytest.raises(SchemaError, match=rf"'{named}' parameter of MLP"):
        MLP(*arguments, **options)


# ---------------------------------------------------------------- CNN
@pytest.mark.parametrize("variant", ["classic", "deep"])
@pytest.mark.parametrize("channels,size,n_classes", [
    (1, (28, 28), 10),   # MNIST
    (3, (32, 32), 10),   # CIFAR-10
    (3, (24, 40), 4),    # not square
])
def test_cnn_output_shape(variant, channels, size, n_classes):
    model = CNN(channels, n_classes, image_size=size, variant=variant).eval()
    output = model(torch.randn(5, channels, *size))
    assert output.shape == (5, n_classes)
    assert torch.isfinite(output).all()


def test_cnn_classic_is_the_keras_mnist_network():
    model = CNN(1, 10, image_size=(28, 28), variant="classic")
    convolutions = [layer for layer in model.modules() if isinstance(layer, nn.Conv2d)]
    assert [(layer.in_channels, layer.out_channels) for layer in convolutions] == [(1, 32), (32, 64)]
    assert linear_shapes(model) == [(64 * 12 * 12, 128), (128, 10)]
    assert [layer.p for layer in model.modules() if isinstance(layer, nn.Dropout)] == [0.25, 0.5]


def test_cnn_deep_has_three_convolutions():
    model = CNN(3, 10, image_size=(32, 32), variant="deep")
    convolutions = [layer for layer in model.modules() if isinstance(layer, nn.Conv2d)]
    assert [(layer.in_channels, layer.out_channels) for layer in convolutions] == [(3, 32), (32, 64), (64, 64)]
    assert linear_shapes(model) == [(64 * 8 * 8, 64), (64, 10)]


@pytest.mark.parametrize("arguments,options,match", [
    ((0, 10), {}, "'in_channels' parameter of CNN"),
    ((1, 0), {}, "'n_classes' parameter of CNN"),
    ((1, 10), {"variant": "wide"}, "'variant' parameter of CNN"),
    ((1, 10), {"image_size": (5, 5)}, "too small"),
    ((1, 10), {"image_size": (28, 4)}, "too small"),
    ((1, 10), {"image_size": (2, 2)}, "too small"),   # both sides too small
    ((1, 10), {"image_size": (3, 3), "variant": "deep"}, "too small"),
], ids=["in_channels", "n_classes", "variant", "5x5", "28x4", "2x2", "deep-3x3"])
def test_cnn_parameter_errors(arguments, options, match):
    with pytest.raises(SchemaError, match=match):
        CNN(*arguments, **options)


# ---------------------------------------------------------------- StackedLSTM
@pytest.mark.parametrize("input_size,horizon,out_features,expected", [
    (3, 1, 1, (4, 1)),
    (3, 5, 1, (4, 5)),
    (2, 6, 2, (4, 6, 2)),
    (1, 1, 3, (4, 1, 3)),
])
def test_stacked_lstm_forecast_shape(input_size, horizon, out_features, expected):
    model = StackedLSTM(input_size, hidden=8, layers=2, out_features=out_features, horizon=horizon)
    assert model.lstm.num_layers == 2 and model.lstm.hidden_size == 8
    assert model(torch.randn(4, 12, input_size)).shape == expected


def test_stacked_lstm_default_layers_and_dropout():
    model = StackedLSTM(3, dropout=0.2)
    assert model.lstm.num_layers == 3 and model.lstm.dropout == 0.2
    assert StackedLSTM(3, layers=1, dropout=0.2).lstm.dropout == 0.0  # no layer to drop between


def test_stacked_lstm_uses_the_last_step():
    model = StackedLSTM(2, hidden=8, layers=1, horizon=3).eval()
    window = torch.randn(2, 10, 2)
    changed = window.clone()
    changed[:, -1] += 1.0
    assert not torch.allclose(model(window), model(changed))


@pytest.mark.parametrize("options,named", [
    ({"input_size": 0}, "input_size"),
    ({"hidden": 0}, "hidden"),
    ({"layers": 0}, "layers"),
    ({"layers": 1.5}, "layers"),
    ({"out_features": 0}, "out_features"),
    ({"horizon": 0}, "horizon"),
    ({"dropout": 1.5}, "dropout"),
    ({"dropout": -0.2}, "dropout"),
], ids=lambda value: ",".join(f"{key}={item}" for key, item in value.items()) if isinstance(value, dict)
    else str(value))
def test_stacked_lstm_parameter_errors(options, named):
    arguments = {"input_size": 3, **options}
    with pytest.raises(SchemaError, match=rf"'{named}' parameter of StackedLSTM"):
        StackedLSTM(**arguments)


def test_stacked_lstm_residual_forecasts_changes_from_the_last_value():
    import torch

    from bigdl.errors import SchemaError
    from bigdl.models import StackedLSTM

    torch.manual_seed(0)
    model = StackedLSTM(3, hidden=8, layers=2, out_features=1, horizon=4, residual=True, target_channels=[2]).eval()
    window = torch.randn(5, 10, 3)
    shifted = window + torch.tensor([1.0, -2.0, 7.5])  # a level shift of every channel
    with torch.no_grad():
        base, moved = model(window), model(shifted)
    # The network sees the window relative to its last step, so a level shift moves the forecast by
    # exactly the target channel's shift.
    torch.testing.assert_close(moved - base, torch.full_like(base, 7.5))
    assert base.shape == (5, 4)
    with pytest.raises(SchemaError, match="target_channels"):
        StackedLSTM(3, out_features=2, target_channels=[0])


# ---------------------------------------------------------------- residual forecasts and the store's target
@pytest.fixture(scope="module")
def second_channel_store(tmp_path_factory):
    """Two channels (temp, load), the target is load: channel 1, not 0."""
    import numpy as np
    import pandas as pd

    import bigdl

    root = tmp_path_factory.mktemp("residual-target")
    steps = np.arange(200)
    pd.DataFrame({"t": steps, "temp": np.sin(steps / 5.0), "load": 100.0 + steps * 0.5}).to_csv(
        root / "s.csv", index=False)
    return bigdl.ingest.sequences(root / "s.csv", time="t", values=["temp", "load"], target="load", window=8,
                                  horizon=2, store=root / "s.zarr", progress=False)


def test_residual_without_target_channels_is_refused_on_another_target(second_channel_store):
    from bigdl.train import Trainer

    model = StackedLSTM(2, hidden=4, layers=1, horizon=2, residual=True)  # adds channel 0 (temp) back: wrong
    trainer = Trainer(model, epochs=1, on_cluster=False, progress=False)
    with pytest.raises(SchemaError, match=r"built without target_channels, so it adds back the last value of "
                                          r"channel\(s\) \[0\] \(\['temp'\]\), but the store's targets \['load'\] are "
                                          r"channel\(s\) \[1\]\. Pass target_channels=\[1\]"):
        trainer.fit(second_channel_store)
    with pytest.raises(SchemaError, match=r"was given target_channels=\[0\]"):
        Trainer(StackedLSTM(2, hidden=4, layers=1, horizon=2, residual=True, target_channels=[0]), epochs=1,
                on_cluster=False, progress=False).evaluate(second_channel_store)


def test_for_store_infers_the_target_channels(second_channel_store):
    from bigdl.train import Trainer

    model = StackedLSTM.for_store(second_channel_store, hidden=4, layers=1, residual=True)
    assert model.target_channels == [1] and model.horizon == 2 and model.input_size == 2
    history = Trainer(model, epochs=1, batch_size=32, on_cluster=False, progress=False).fit(second_channel_store)
    assert len(history) == 1
    # the residual adds back the last load value: a zero network output forecasts "no change" of load
    with torch.no_grad():
        for parameter in model.head.parameters():
            parameter.zero_()
        window = torch.randn(3, 8, 2)
        torch.testing.assert_close(model(window), window[:, -1:, 1].expand(3, 2))
