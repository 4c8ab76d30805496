"""The paper's networks in their variants: the paper's five and two with affine LayerNorm
(docs/method.md section 3).

Every model is an ``nn.Module`` used functionally: parameters live in a
``dict[str, Tensor]`` and the forward pass is ``torch.func.functional_call`` (see
:func:`forward`), so scaling, Hessian-vector products and training never write into the
module. Variants:

- ``homogeneous``: no biases, no normalisation, no skips; ``f(alpha theta) = alpha^L f(theta)``.
- ``bias``: every layer has a bias drawn from ``U[-0.1, 0.1]``.
- ``residual``: a branch ``h + W2 relu(W1 h)`` (LeNets: a bottleneck around the preceding
  width; ResNet-4: its own block).
- ``layernorm``: LayerNorm without affine parameters (eps 1e-5) on the pre-activation of
  every weight layer except the head, and on a residual branch's output before the add.
- ``combined``: all three.

What each variant switches on (biases, skip, LayerNorm) comes from its description in
:mod:`goldilocks.variants`, never from its name. Weights are Kaiming-normal (fan-in, ReLU
gain ``sqrt(2)``) for every weight layer, including the head.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from goldilocks.variants import ARCHITECTURES, check_choice, properties

LN_EPS = 1e-5
BIAS_RANGE = 0.1


def _norm(x: Tensor, enabled: bool) -> Tensor:
    """LayerNorm over all non-batch dimensions ((C, H, W) for conv maps), no affine."""
    return F.layer_norm(x, x.shape[1:], eps=LN_EPS) if enabled else x


class Affine(nn.Module):
    """The gain and shift of an affine LayerNorm: ``gamma * x + beta``, per feature (per
    channel for conv maps, as ``torch.nn.GroupNorm(1, C)``); ``gamma = 1`` and
    ``beta = 0`` at initialisation (:func:`init_params`).

    ``alpha_fixed``: alpha scaling leaves these parameters alone
    (:func:`goldilocks.scaling.alpha_fixed`), so the hidden activations stay invariant to
    alpha and the logits scale as alpha^1 (scaling them too would give alpha^2).
    """

    alpha_fixed = True

    def __init__(self, features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(features))
        self.bias = nn.Parameter(torch.empty(features))

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)  # features on dim 1
        return x * self.weight.view(shape) + self.bias.view(shape)


class _Net(nn.Module):
    """Shared construction: the variant's switches (bias, skip, LayerNorm, affine)."""

    def __init__(self, variant: str) -> None:
        super().__init__()
        self.variant = variant
        switches = properties(variant)
        self.has_bias, self.has_skip, self.has_norm = switches.bias, switches.skip, switches.norm
        self.has_affine = switches.affine

    def _normed(self, layer: nn.Module, features: int, normed: bool) -> nn.Module:
        """Give a weight layer followed by an affine LayerNorm its gain and shift (``.ln``)."""
        if normed and self.has_affine:
            layer.ln = Affine(features)
        return layer

    def _linear(self, n_in: int, n_out: int, normed: bool = True) -> nn.Linear:
        """A linear layer; ``normed``: LayerNorm follows it in the LayerNorm variants."""
        return self._normed(nn.Linear(n_in, n_out, bias=self.has_bias), n_out, normed)

    def _conv(self, c_in: int, c_out: int, kernel: int, padding: int = 0) -> nn.Conv2d:
        conv = nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=self.has_bias)
        return self._normed(conv, c_out, True)

    def _norm(self, layer: nn.Module, x: Tensor) -> Tensor:
        """The LayerNorm that follows ``layer`` (with its affine part), if the variant has one."""
        x = _norm(x, self.has_norm)
        return layer.ln(x) if self.has_affine else x

    def _layer(self, layer: nn.Module, x: Tensor) -> Tensor:
        """Weight layer, LayerNorm (if any), ReLU."""
        return F.relu(self._norm(layer, layer(x)))

    def _dense_tail(self, n_in: int, wide: int, narrow: int, num_classes: int) -> None:
        """The LeNets' fully connected tail: ``in -> wide -> narrow -> K``; with a skip,
        ``in -> wide``, then ``h + W2 relu(W1 h)`` with ``W1: wide -> narrow``,
        ``W2: narrow -> wide`` (a bottleneck around the wide layer), then ``wide -> K``."""
        self.fc1 = self._linear(n_in, wide)
        if self.has_skip:
            self.block1 = self._linear(wide, narrow)
            self.block2 = self._linear(narrow, wide)
            self.head = self._linear(wide, num_classes, normed=False)
        else:
            self.fc2 = self._linear(wide, narrow)
            self.head = self._linear(narrow, num_classes, normed=False)

    def _tail(self, h: Tensor) -> Tensor:
        """The dense tail's forward pass: ``(N, in) -> (N, K)``."""
        h = self._layer(self.fc1, h)  # (N, wide)
        if self.has_skip:
            h = self._branch(self.block1, self.block2, h)  # (N, wide)
        else:
            h = self._layer(self.fc2, h)  # (N, narrow)
        return self.head(h)  # (N, K)

    def _branch(self, first: nn.Module, second: nn.Module, x: Tensor) -> Tensor:
        """``x + LN(W2 relu(LN(W1 x)))``; without skip ``LN(W2 relu(LN(W1 x)))``."""
        out = self._norm(second, second(self._layer(first, x)))
        return x + out if self.has_skip else out


class LeNet300100(_Net):
    """LeNet-300-100: ``in-300-100-10``, ReLU.

    ``residual``: ``in->300``, then ``h + W2 relu(W1 h)`` with ``W1: 300->100``,
    ``W2: 100->300``, then ``300->10`` (L = 4, 𝓛 = 2).
    """

    def __init__(
        self,
        variant: str,
        in_shape: tuple[int, int, int],
        num_classes: int,
        widths: tuple[int, int] = (300, 100),
    ) -> None:
        super().__init__(variant)
        self._dense_tail(math.prod(in_shape), *widths, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self._tail(x.flatten(1))  # (N, 784) -> (N, K)


class LeNet5(_Net):
    """LeNet-5: conv5x5(6)-ReLU-avgpool2-conv5x5(16)-ReLU-avgpool2-120-84-10.

    ``residual``: conv, conv, ``400->120``, then ``h + W2 relu(W1 h)`` with
    ``W1: 120->84``, ``W2: 84->120``, then ``120->10`` (L = 6, 𝓛 = 2).
    """

    def __init__(
        self,
        variant: str,
        in_shape: tuple[int, int, int],
        num_classes: int,
        widths: tuple[int, int, int, int] = (6, 16, 120, 84),
    ) -> None:
        super().__init__(variant)
        channels, height, width = in_shape
        c1, c2, wide, narrow = widths
        self.conv1 = self._conv(channels, c1, 5)
        self.conv2 = self._conv(c1, c2, 5)
        flat = c2 * (((height - 4) // 2 - 4) // 2) * (((width - 4) // 2 - 4) // 2)
        self._dense_tail(flat, wide, narrow, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = F.avg_pool2d(self._layer(self.conv1, x), 2)  # (N, 6, 14, 14) for 32x32
        h = F.avg_pool2d(self._layer(self.conv2, h), 2)  # (N, 16, 5, 5)
        return self._tail(h.flatten(1))  # (N, 400) -> (N, K)


class ResNet4(_Net):
    """ResNet-4: conv3x3 stem to 16 channels, one block of two 3x3 convs 16->16, global
    average pooling, linear 16->K; padding 1, no striding (L = 4).

    The skip ``y = x + W2 relu(W1 x)`` exists only in ``residual`` and ``combined``
    (𝓛 = 2); the other variants run the same two convs without it.
    """

    def __init__(
        self,
        variant: str,
        in_shape: tuple[int, int, int],
        num_classes: int,
        width: int = 16,
    ) -> None:
        super().__init__(variant)
        self.stem = self._conv(in_shape[0], width, 3, padding=1)
        self.block1 = self._conv(width, width, 3, padding=1)
        self.block2 = self._conv(width, width, 3, padding=1)
        self.head = self._linear(width, num_classes, normed=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self._layer(self.stem, x)  # (N, 16, H, W)
        h = self._branch(self.block1, self.block2, h)  # (N, 16, H, W)
        return self.head(h.mean(dim=(2, 3)))  # (N, K)


_CLASSES: dict[str, type[_Net]] = {
    "lenet300100": LeNet300100,
    "lenet5": LeNet5,
    "resnet4": ResNet4,
}


def build_model(
    architecture: str,
    variant: str,
    in_shape: tuple[int, int, int],
    num_classes: int,
    **widths,
) -> nn.Module:
    """The module of ``architecture`` in ``variant``, on the meta device.

    The module holds no data: parameters come from :func:`init_params` and are passed to
    :func:`forward`. ``widths`` override the paper's layer widths (tests build tiny
    models of every variant this way).
    """
    check_choice("architecture", architecture, ARCHITECTURES)
    with torch.device("meta"):
        model = _CLASSES[architecture](variant, tuple(in_shape), num_classes, **widths)
    return model


def init_params(
    model: nn.Module, generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> dict[str, Tensor]:
    """Fresh initial parameters: Kaiming-normal weights, ``U[-0.1, 0.1]`` biases, and
    ``gamma = 1``, ``beta = 0`` for an affine LayerNorm (:class:`Affine`, no draw).

    Drawn in the module's parameter order from ``generator`` alone, so the same seed gives
    the same parameters in every process and at every dtype (drawn in float64, then cast);
    a variant with affine LayerNorm draws the same weights as the one without.
    """
    params = {}
    for module_name, module in model.named_modules():
        for short, p in module.named_parameters(recurse=False):
            name = f"{module_name}.{short}" if module_name else short
            if isinstance(module, Affine):
                value = torch.full(p.shape, 1.0 if short == "weight" else 0.0, dtype=torch.float64)
            elif short == "bias":
                value = torch.rand(p.shape, generator=generator, dtype=torch.float64)
                value = (value * 2 - 1) * BIAS_RANGE
            else:
                fan_in = math.prod(p.shape[1:])
                std = math.sqrt(2.0 / fan_in)
                value = torch.randn(p.shape, generator=generator, dtype=torch.float64) * std
            params[name] = value.to(dtype)
    return params


def forward(model: nn.Module, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """Logits ``f_theta(x)`` of ``model`` at ``params``: ``(N, C, H, W) -> (N, K)``."""
    return torch.func.functional_call(model, params, (x,))


def count_params(params: dict[str, Tensor]) -> int:
    """``P``: number of trainable scalars."""
    return sum(p.numel() for p in params.values())
