"""The torch-free architecture table: depths, output exponents and dataset shapes.

The workflow needs these numbers while it builds the DAG (the temperature grid spans
``10^(-3L) .. 10^(3L)``), and importing torch there would cost seconds per job, so this
module imports nothing heavy. ``tests/test_architectures.py`` checks every entry against
the built models.

Notation (SPEC section 2): ``L`` is the number of weight layers on the longest
input-output path, ``𝓛`` (``residual_depth``) the number of weight layers inside residual
branches, and ``k`` the output exponent: the logits scale as ``alpha^k`` at large alpha.
"""

from __future__ import annotations

from dataclasses import dataclass

ARCHITECTURES: tuple[str, ...] = ("lenet300100", "lenet5", "resnet4")
DATASETS: tuple[str, ...] = ("fmnist", "cifar10", "synthetic")
VARIANTS: tuple[str, ...] = ("homogeneous", "bias", "residual", "layernorm", "combined")
SCALINGS: tuple[str, ...] = ("alpha", "temperature", "joint")
TRAINING_SCALINGS: tuple[str, ...] = ("alpha", "temperature")

#: The architecture/dataset pairs of the paper; ``synthetic`` goes with every architecture.
PAPER_PAIRS: tuple[tuple[str, str], ...] = (
    ("lenet300100", "fmnist"),
    ("lenet5", "cifar10"),
    ("resnet4", "fmnist"),
    ("resnet4", "cifar10"),
)

#: Input shape (channels, height, width) and number of classes of every dataset.
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "fmnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
    "synthetic": ((1, 28, 28), 10),
}


@dataclass(frozen=True)
class Depth:
    """Depth facts of one architecture variant.

    Attributes:
        depth: ``L``, weight layers on the longest input-output path.
        residual_depth: ``𝓛``, weight layers inside residual branches (0 without skips).
    """

    depth: int
    residual_depth: int


# Residual variants add a two-layer bottleneck branch to the LeNets; ResNet-4 keeps its
# skip only in ``residual`` and ``combined`` (SPEC section 3), so its depth never changes.
_BASE_DEPTH = {"lenet300100": 3, "lenet5": 5, "resnet4": 4}
_HAS_SKIP = {"residual", "combined"}


def depth(architecture: str, variant: str) -> Depth:
    """``L`` and ``𝓛`` of ``architecture`` in ``variant`` (SPEC sections 2-3)."""
    check_choice("architecture", architecture, ARCHITECTURES)
    check_choice("variant", variant, VARIANTS)
    base = _BASE_DEPTH[architecture]
    if variant not in _HAS_SKIP:
        return Depth(base, 0)
    if architecture == "resnet4":
        return Depth(base, 2)
    return Depth(base + 1, 2)


def output_exponent(architecture: str, variant: str) -> int:
    """``k``: the logits scale as ``alpha^k`` at large alpha.

    ``L`` for ``homogeneous``, ``bias`` and ``residual``; 1 for ``layernorm`` and
    ``combined``, whose hidden activations are invariant to alpha (paper Appendix E-F).
    """
    if variant in ("layernorm", "combined"):
        return 1
    return depth(architecture, variant).depth


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming ``key`` when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{key}: unknown value {value!r}; choose one of {', '.join(choices)}")
