"""A small Vision Transformer, registered as a user's model (configs/vit.yaml).

Fashion-MNIST images cut into 7x7 patches (16 tokens of 49 pixels; 8x8 patches on a
32x32 input), a linear patch embedding to width 64 plus a learned position embedding,
two PyTorch ``nn.TransformerEncoderLayer`` blocks (4 heads, MLP width 128, ReLU, no
dropout), mean pooling over the tokens and a linear head. Variants:

- ``nonorm``: the blocks' LayerNorms replaced by identities, ``x + attn(x)``,
  ``x + mlp(x)``;
- ``preln``: pre-LayerNorm blocks, ``x + attn(LN(x))``, ``x + mlp(LN(x))``;
- ``prelnfinal``: the same with a final LayerNorm before the pooling;
- ``postln``: post-LayerNorm blocks, ``LN(x + attn(x))``, ``LN(x + mlp(x))``.

Every module keeps PyTorch's own initialisation (``reset_parameters``); the position
embedding is ``N(0, 0.02^2)``. The LayerNorms have PyTorch's affine gamma and beta; the
config exempts them from alpha scaling (``alpha_exempt: ["*norm*"]``), so at every alpha
the normalisation is the parameter-free one of the paper's App. E.

Weight layers on the longest input-output path (L = 10): the patch embedding; in each
block the attention's value and output projections (the query and key projections lie on
paths of the same length, but at large alpha the softmax saturates and they only select
tokens) and the MLP's two layers; the head. 𝓛 = 8: the 4 layers of each block sit inside
its residual branches.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

VARIANTS = ("nonorm", "preln", "prelnfinal", "postln")


class ViT(nn.Module):
    def __init__(
        self,
        variant: str,
        in_shape: tuple[int, int, int],
        num_classes: int,
        width: int = 64,
        blocks: int = 2,
        heads: int = 4,
        mlp: int = 128,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"vit: unknown variant {variant!r}; choose one of {VARIANTS}")
        channels, height, width_px = in_shape
        self.patch = 7 if height % 7 == 0 and width_px % 7 == 0 else 8
        tokens = (height // self.patch) * (width_px // self.patch)
        self.embed = nn.Linear(channels * self.patch**2, width)
        self.pos = nn.Parameter(torch.randn(1, tokens, width) * 0.02)
        layers = []
        for _ in range(blocks):
            layer = nn.TransformerEncoderLayer(
                width,
                heads,
                dim_feedforward=mlp,
                dropout=0.0,
                activation="relu",
                batch_first=True,
                norm_first=variant in ("preln", "prelnfinal"),
            )
            if variant == "nonorm":
                layer.norm1, layer.norm2 = nn.Identity(), nn.Identity()
            layers.append(layer)
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(width) if variant == "prelnfinal" else nn.Identity()
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        p = self.patch
        n, c = x.shape[:2]
        x = x.unfold(2, p, p).unfold(3, p, p)  # (N, C, H/p, W/p, p, p)
        x = x.permute(0, 2, 3, 1, 4, 5).reshape(n, -1, c * p * p)  # (N, tokens, C p p)
        h = self.embed(x) + self.pos  # (N, tokens, width)
        for layer in self.layers:
            h = layer(h)
        return self.head(self.norm(h).mean(dim=1))  # (N, K)


def build(variant: str, in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The factory named in configs/vit.yaml: ``examples.vit:build``."""
    return ViT(variant, in_shape, num_classes)
