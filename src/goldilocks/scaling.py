"""Alpha scaling of parameters and the temperature-scaled loss (docs/method.md sections 2 and 4)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def scale_params(params: dict[str, Tensor], alpha: float) -> dict[str, Tensor]:
    """``alpha * theta``: every parameter (weights and biases) times ``alpha``.

    Pure: returns new tensors and leaves ``params`` untouched, so one stored
    initialisation serves every scale.
    """
    return {name: value * alpha for name, value in params.items()}


def tempered_loss(logits: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """Mean softmax cross-entropy of ``logits / T``: ``-(1/N) sum log softmax(z/T)_y``."""
    return F.cross_entropy(logits / temperature, labels)
