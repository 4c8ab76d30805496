"""Users' own models, registered from the config's ``models`` section (torch-free;
docs/method.md section 3.5).

A registered model is a name, a factory ``"module:function"`` with
``function(variant, in_shape, num_classes) -> nn.Module``, and per variant the numbers the
workflow needs while it builds the job graph: ``L`` (``depth``), ``𝓛``
(``residual_depth``) and ``k`` (``output_exponent``, or ``None`` where the logits follow
no single power of alpha). :func:`register_models` turns them into
:class:`RegisteredDescription` entries of the variant registry
(:mod:`goldilocks.variants`), so grids, learning-rate rules, cells and figures treat the
model like a built-in architecture. Nothing here imports the factory or torch: the
factory is imported by the jobs (:mod:`goldilocks.factory`), and the config check only
locates its module file (:func:`locate_module`).
"""

from __future__ import annotations

import fnmatch
import importlib.machinery
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from goldilocks.variants import Description, Variant, describe, register


@dataclass(frozen=True)
class RegisteredDescription(Description):
    """A user's (model, variant): the declared numbers plus where the module comes from.

    Attributes:
        factory: ``"module:function"``; ``function(variant, in_shape, num_classes)``
            returns the ``nn.Module``.
        alpha_exempt: ``fnmatch`` patterns of parameter names that alpha scaling leaves
            alone (e.g. ``"*norm*"`` for LayerNorm's gamma and beta); empty: alpha
            multiplies every parameter, as for the built-ins.
        output_exponent: ``k``, or ``None`` when declared ``null`` (then joint scaling and
            alpha training are refused for it by the config check).
    """

    output_exponent: int | None = None
    factory: str = ""
    alpha_exempt: tuple[str, ...] = ()

    def exempt(self, names: Iterable[str]) -> frozenset[str]:
        """The parameter names among ``names`` that alpha does not scale."""
        return frozenset(
            n for n in names if any(fnmatch.fnmatchcase(n, p) for p in self.alpha_exempt)
        )


def descriptions(models: Mapping) -> list[RegisteredDescription]:
    """The registry entries of a (schema-validated) ``models`` config section."""
    out = []
    for name, spec in models.items():
        for variant, numbers in spec["variants"].items():
            switches = {s: bool(numbers.get(s, False)) for s in ("bias", "skip", "norm")}
            depth, residual_depth = int(numbers["depth"]), int(numbers.get("residual_depth", 0))
            switched = Variant(variant, **switches)
            out.append(
                RegisteredDescription(
                    architecture=name,
                    variant=switched,
                    depth=depth,
                    residual_depth=residual_depth,
                    output_exponent=numbers["output_exponent"],
                    # m: L - 𝓛 for a skip without LayerNorm only (not yet a config key of
                    # its own); other registered variants get no joint_residual curve.
                    small_alpha_exponent=depth - residual_depth
                    if switched.skip and not switched.norm
                    else None,
                    factory=spec["factory"],
                    alpha_exempt=tuple(spec.get("alpha_exempt", ())),
                )
            )
    return out


def register_models(config: Mapping) -> list[RegisteredDescription]:
    """Register every model of ``config["models"]`` (idempotent; no import of the
    factories). Every process that reads the config calls it: the workflow when it
    parses (through :func:`goldilocks.config.check_config`), and the script jobs."""
    entries = descriptions(config.get("models") or {})
    for entry in entries:
        register(entry)
    return entries


def registered(architecture: str, variant: str) -> RegisteredDescription | None:
    """The registered description of ``architecture``/``variant``; ``None`` for a
    built-in."""
    d = describe(architecture, variant)
    return d if isinstance(d, RegisteredDescription) else None


def locate_module(module: str, path: Iterable[str] | None = None) -> bool:
    """Whether ``module`` (dotted) can be found on ``path`` (default ``sys.path``),
    without importing it or any of its parent packages.

    Each dotted part is looked up with :class:`importlib.machinery.PathFinder` in the
    folders of the part before it, so a parent package's ``__init__`` never runs (the
    workflow checks the config at every parse and must stay torch-free). Modules that are
    already imported, and built-in ones, count as found.
    """
    if module in sys.modules:
        return True
    search = list(sys.path if path is None else path)
    spec = None
    for part in module.split("."):
        spec = importlib.machinery.PathFinder.find_spec(part, search)
        if spec is None:
            return False
        search = list(spec.submodule_search_locations or [])
    return spec is not None
