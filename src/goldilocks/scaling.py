"""Alpha scaling of parameters and the temperature-scaled loss (docs/method.md sections 2 and 4)."""

from __future__ import annotations

from collections.abc import Collection

import torch.nn.functional as F
from torch import Tensor


def scale_params(
    params: dict[str, Tensor], alpha: float, exempt: Collection[str] = ()
) -> dict[str, Tensor]:
    """``alpha * theta``: every parameter (weights and biases) times ``alpha``, except
    those named in ``exempt`` (a registered model's ``alpha_exempt``, docs/method.md
    section 3.5; empty for the built-ins).

    Pure: returns new tensors and leaves ``params`` untouched, so one stored
    initialisation serves every scale.
    """
    return {name: value if name in exempt else value * alpha for name, value in params.items()}


def tempered_loss(logits: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """Mean softmax cross-entropy of ``logits / T``: ``-(1/N) sum log softmax(z/T)_y``."""
    return F.cross_entropy(logits / temperature, labels)
