"""What can be run, torch-free: architectures, variants, datasets, and what each
(architecture, variant) is (docs/method.md sections 2-3).

This is the one place where a variant's meaning is written down. A :class:`Variant` is a
set of architectural switches (biases, a residual skip, LayerNorm); an
:class:`Architecture` says how deep it is and what a skip adds; :func:`describe` turns
the two into a :class:`Description` with ``L``, ``𝓛``, the output exponent ``k`` (large
alpha) and the small-alpha exponent ``m``.
Everything downstream (models, the scale grids, the learning-rate rule, the workflow's
rules and the figures) asks these objects and decides from their properties, never from
a variant's name.

The workflow needs these numbers while it builds the DAG (the temperature grid spans
``10^(-3L) .. 10^(3L)``), so this module imports nothing heavy. The registry can grow:
:func:`register` adds a description (a later config section registers users' models);
``tests/test_variants.py`` checks every built-in entry against the built models.

Notation: ``L`` is the number of weight layers on the longest input-output path, ``𝓛``
(``residual_depth``) the number of weight layers inside residual branches, ``k`` the
output exponent: the logits scale as ``alpha^k`` at large alpha, and ``m`` the small-alpha
exponent: they scale as ``alpha^m`` as alpha -> 0.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """The architectural switches of a variant (docs/method.md section 3).

    Attributes:
        name: the identifier used in config, paths and tables.
        bias: every weight layer has a bias, drawn from ``U[-0.1, 0.1]``.
        skip: identity skips around residual branches, ``y = x + W2 relu(W1 x)``.
        norm: LayerNorm on the pre-activation of every weight layer but the head, and on a
            residual branch's output before the add.
        affine: the LayerNorm has a gain and a shift (gamma = 1, beta = 0 at
            initialisation; alpha does not scale them); without, it has none.
    """

    name: str
    bias: bool = False
    skip: bool = False
    norm: bool = False
    affine: bool = False


@dataclass(frozen=True)
class Architecture:
    """Depth facts of an architecture, before any variant is applied.

    Attributes:
        name: the identifier used in config, paths and tables.
        depth: ``L`` without a skip.
        skip_adds: weight layers a skip adds to the longest path (the LeNets' bottleneck
            block replaces one layer by two: 1; ResNet-4's block exists in every variant
            and only gains its skip: 0).
        branch_layers: weight layers inside the residual branch (``𝓛`` with a skip).
    """

    name: str
    depth: int
    skip_adds: int
    branch_layers: int = 2


@dataclass(frozen=True)
class Description:
    """One (architecture, variant): its switches, ``L``, ``𝓛`` and ``k``.

    Attributes:
        architecture: the architecture's name.
        variant: the variant's switches.
        depth: ``L``, weight layers on the longest input-output path.
        residual_depth: ``𝓛``, weight layers inside residual branches (0 without skips).
        output_exponent: ``k``: the logits scale as ``alpha^k`` at large alpha.
        small_alpha_exponent: ``m``: the logits scale as ``alpha^m`` as alpha -> 0
            (:func:`small_alpha_rule`; ``None`` where no single power holds).
    """

    architecture: str
    variant: Variant
    depth: int
    residual_depth: int
    output_exponent: int
    small_alpha_exponent: int | None = None

    @property
    def linear_output(self) -> bool:
        """The logits move only linearly with alpha (``k = 1``): such variants sweep the
        wider ``alpha_linear`` grid (docs/method.md section 2)."""
        return self.output_exponent == 1

    @property
    def skip_path_exponent(self) -> int | None:
        """``L - 𝓛`` where a skip without LayerNorm gives an identity-only path (the
        ``residual`` variant; the ``residual_small_alpha`` learning-rate rule, paper
        Appendix G), else ``None``."""
        if self.variant.skip and not self.variant.norm:
            return self.depth - self.residual_depth
        return None


def small_alpha_rule(variant: Variant, depth_: int, residual_depth: int) -> int:
    """``m``, the logits' exponent as alpha -> 0 (docs/method.md section 2.3).

    As alpha -> 0 every LayerNorm is in its ``eps`` regime, where it is linear (it
    divides by ``sqrt(eps)``), so LayerNorm does not change the exponent. Of the terms of
    the logits, the lowest power of alpha dominates: a bias adds ``alpha b_L`` at the head
    (``m = 1``, and the logits no longer depend on the input); else a skip's identity
    path skips the ``𝓛`` branch layers (``m = L - 𝓛``, paper Appendix D); else
    ``m = L``.
    """
    if variant.bias:
        return 1
    return depth_ - residual_depth if variant.skip else depth_


# The built-ins (docs/method.md section 3).
_BUILTIN_VARIANTS = (
    Variant("homogeneous"),
    Variant("bias", bias=True),
    Variant("residual", skip=True),
    Variant("layernorm", norm=True),
    Variant("combined", bias=True, skip=True, norm=True),
    Variant("layernorm_affine", norm=True, affine=True),
    Variant("combined_affine", bias=True, skip=True, norm=True, affine=True),
)
_BUILTIN_ARCHITECTURES = (
    Architecture("lenet300100", depth=3, skip_adds=1),
    Architecture("lenet5", depth=5, skip_adds=1),
    Architecture("resnet4", depth=4, skip_adds=0),
)

#: Names of the built-in architectures and variants, in the paper's order (then the
#: LayerNorm variants with gain and shift, beyond the paper's derivation).
ARCHITECTURES: tuple[str, ...] = tuple(a.name for a in _BUILTIN_ARCHITECTURES)
VARIANTS: tuple[str, ...] = tuple(v.name for v in _BUILTIN_VARIANTS)

DATASETS: tuple[str, ...] = ("fmnist", "cifar10", "synthetic")
#: Input shape (channels, height, width) and number of classes of every dataset.
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "fmnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
    "synthetic": ((1, 28, 28), 10),
}
#: Sizes of the training and test splits of every dataset.
DATASET_SIZES: dict[str, tuple[int, int]] = {
    "fmnist": (60_000, 10_000),
    "cifar10": (50_000, 10_000),
    "synthetic": (1024, 512),
}
#: The architecture/dataset pairs of the paper; ``synthetic`` goes with every architecture.
PAPER_PAIRS: tuple[tuple[str, str], ...] = (
    ("lenet300100", "fmnist"),
    ("lenet5", "cifar10"),
    ("resnet4", "fmnist"),
    ("resnet4", "cifar10"),
)


def _builtin(architecture: Architecture, variant: Variant) -> Description:
    """What a variant's switches do to an architecture: the one rule for the built-ins.

    A skip adds ``skip_adds`` layers to the longest path and puts ``branch_layers`` of
    them inside the branch; LayerNorm makes every hidden activation invariant to alpha, so
    only the head scales the logits (``k = 1``); otherwise ``k = L``.
    """
    depth = architecture.depth + (architecture.skip_adds if variant.skip else 0)
    residual_depth = architecture.branch_layers if variant.skip else 0
    return Description(
        architecture=architecture.name,
        variant=variant,
        depth=depth,
        residual_depth=residual_depth,
        output_exponent=1 if variant.norm else depth,
        small_alpha_exponent=small_alpha_rule(variant, depth, residual_depth),
    )


_REGISTRY: dict[tuple[str, str], Description] = {
    (a.name, v.name): _builtin(a, v) for a in _BUILTIN_ARCHITECTURES for v in _BUILTIN_VARIANTS
}


def register(description: Description) -> None:
    """Add (or replace) one (architecture, variant) description in the registry."""
    _REGISTRY[(description.architecture, description.variant.name)] = description


def architecture_names() -> tuple[str, ...]:
    """Every registered architecture, built-ins first."""
    return tuple(dict.fromkeys(a for a, _ in _REGISTRY))


def variant_names(architecture: str | None = None) -> tuple[str, ...]:
    """Every registered variant (of ``architecture``, when given), built-ins first."""
    return tuple(dict.fromkeys(v for a, v in _REGISTRY if architecture in (None, a)))


def describe(architecture: str, variant: str) -> Description:
    """The description of ``architecture`` in ``variant``.

    Raises:
        ValueError: naming the key (``architecture`` or ``variant``) that is unknown.
    """
    check_choice("architecture", architecture, architecture_names())
    check_choice("variant", variant, variant_names(architecture))
    return _REGISTRY[(architecture, variant)]


def properties(variant: str) -> Variant:
    """The switches of ``variant`` (the same for every architecture that has it)."""
    check_choice("variant", variant, variant_names())
    return next(d.variant for (_, name), d in _REGISTRY.items() if name == variant)


def depth(architecture: str, variant: str) -> Description:
    """``L`` (``.depth``) and ``𝓛`` (``.residual_depth``) of ``architecture`` in ``variant``."""
    return describe(architecture, variant)


def output_exponent(architecture: str, variant: str) -> int:
    """``k``: the logits scale as ``alpha^k`` at large alpha (``L``, or 1 with LayerNorm)."""
    return describe(architecture, variant).output_exponent


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming ``key`` when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{key}: unknown value {value!r}; choose one of {', '.join(choices)}")
