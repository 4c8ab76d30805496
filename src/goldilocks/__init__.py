"""Goldilocks: curvature at initialisation and trainability of inhomogeneous networks.

The torch-free parts (``variants``, ``grid``, ``cells``, ``registered``, ``config``,
``io``, ``tables``, ``aggregate``, ``zone``, ``claims`` and its parts ``claim_*``,
``claims_*`` and ``decision``, ``figure_spec``, ``plan``)
import in milliseconds, because the workflow needs some of them at every parse;
everything else is loaded on first attribute access, so ``import goldilocks`` alone
never imports torch. The method these modules compute is written down in
``docs/method.md``.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "build_model": "models",
    "init_params": "models",
    "forward": "models",
    "count_params": "models",
    "scale_params": "scaling",
    "tempered_loss": "scaling",
    "sparse_projection": "curvature",
    "projected_hessian": "curvature",
    "projected_jacobian": "curvature",
    "gauss_newton": "curvature",
    "matrix_metrics": "curvature",
    "measure": "curvature",
    "Problem": "curvature",
    "resolve_methods": "curvature",
    "InitialState": "initial",
    "describe": "variants",
    "train": "training",
    "TrainState": "training",
    "prepare": "data",
    "load_split": "data",
    "goldilocks_zone": "zone",
    "zone_bounds": "zone",
    "figure_1": "figures",
    "figure_2": "figures",
    "figure_3": "figures",
    "figure_4": "figures",
    "figure_5": "figures",
    "figure_6": "figures",
    "figure_7": "figures",
    "scaled_output_kl": "output_scaling",
    "output_scaling_table": "output_scaling",
    "depth": "variants",
    "output_exponent": "variants",
    "lr_factor": "grid",
    "alpha_and_temperature": "grid",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"goldilocks.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'goldilocks' has no attribute {name!r}")
