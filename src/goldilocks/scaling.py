"""Alpha scaling of parameters and the temperature-scaled loss (docs/method.md sections 2
and 4)."""

from __future__ import annotations

from collections.abc import Collection

import torch.nn.functional as F
from torch import Tensor, nn

#: Attribute of a model that names further parameters alpha leaves alone: a registered
#: model's ``alpha_exempt`` matches, set by :func:`goldilocks.factory.model_for`.
EXEMPT_ATTRIBUTE = "goldilocks_alpha_exempt"


def alpha_fixed(model: nn.Module) -> frozenset[str]:
    """Names of the parameters alpha scaling leaves alone: those of every submodule that
    sets ``alpha_fixed = True`` (the gain and shift of an affine LayerNorm,
    :class:`goldilocks.models.Affine`), and those a registered model's config names in
    ``alpha_exempt`` (docs/method.md section 3.5; :data:`EXEMPT_ATTRIBUTE`)."""
    flagged = frozenset(
        f"{prefix}.{name}" if prefix else name
        for prefix, module in model.named_modules()
        if getattr(module, "alpha_fixed", False)
        for name, _ in module.named_parameters(recurse=False)
    )
    return flagged | getattr(model, EXEMPT_ATTRIBUTE, frozenset())


def scale_params(
    params: dict[str, Tensor], alpha: float, fixed: Collection[str] = ()
) -> dict[str, Tensor]:
    """``alpha * theta``: every parameter (weights and biases) times ``alpha``, except those
    named in ``fixed`` (:func:`alpha_fixed` of the model), which are kept as they are.

    Pure: returns new tensors and leaves ``params`` untouched, so one stored
    initialisation serves every scale.
    """
    return {name: value if name in fixed else value * alpha for name, value in params.items()}


def tempered_loss(logits: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """Mean softmax cross-entropy of ``logits / T``: ``-(1/N) sum log softmax(z/T)_y``."""
    return F.cross_entropy(logits / temperature, labels)
