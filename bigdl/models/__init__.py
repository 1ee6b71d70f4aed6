"""Reference networks (plain ``torch.nn.Module``s): MLP, CNN, stacked LSTM."""

from bigdl.models._networks import CNN, MLP, StackedLSTM

__all__ = ["MLP", "CNN", "StackedLSTM"]
