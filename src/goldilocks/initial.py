"""The initial state of one seed, and the problem a cell builds from it.

Everything a seed fixes is drawn once by the init stage (:func:`draw`): the unscaled
parameters (float64, cast by consumers), the curvature batch and the projection ``R``,
each from its own random stream (:func:`goldilocks.runtime.generator`). The scaling is
applied by the consumer: :func:`problem` gives a cell its model, alpha-scaled parameters,
batch and ``R`` on a device and dtype (docs/method.md sections 2-4). Curvature cells,
training cells (curvature along training), the KL stage and the benchmarks all build
their problems here. A registered model (docs/method.md section 3.5) is drawn by its own
initialisers and carries its buffers (:mod:`goldilocks.factory`).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field

import torch
from torch import Tensor

from goldilocks.curvature import Problem, Projection, sparse_projection
from goldilocks.io import load_tensor_file, save_tensors, stale
from goldilocks.models import build_model, count_params, init_params
from goldilocks.registered import registered
from goldilocks.runtime import generator
from goldilocks.scaling import alpha_fixed, scale_params
from goldilocks.variants import DATASET_SHAPES

#: Version of the init file's contents; files written before it was recorded are 1.
#: 2 added ``buffers`` (a registered model's); a format-1 file has none and still reads.
INIT_FORMAT = 2
READABLE_FORMATS = (1, 2)
#: What every readable init file holds (format 1 lacks ``buffers``).
INIT_ENTRIES = ("params", "batch_x", "batch_y", "batch_indices", "proj_index", "proj_value")


@dataclass(frozen=True)
class InitialState:
    """What one seed fixes for one (architecture, dataset, variant).

    Attributes:
        params: unscaled initial parameters ``theta``, float64, CPU.
        batch_x: the curvature batch, normalised images, float64.
        batch_y: its labels.
        batch_indices: the batch's indices in the training split.
        projection: ``R``.
        buffers: a registered model's buffers (floating ones in float64; never scaled);
            empty for the built-ins.
    """

    params: dict[str, Tensor]
    batch_x: Tensor
    batch_y: Tensor
    batch_indices: Tensor
    projection: Projection
    buffers: dict[str, Tensor] = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> None:
        """Write the init file (atomically)."""
        save_tensors(
            {
                "format": INIT_FORMAT,
                "params": self.params,
                "batch_x": self.batch_x,
                "batch_y": self.batch_y,
                "batch_indices": self.batch_indices,
                "proj_index": self.projection.index,
                "proj_value": self.projection.value,
                "buffers": self.buffers,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> InitialState:
        """Read an init file; one of another format raises :class:`goldilocks.io.StaleFile`."""
        saved = load_tensor_file(path, INIT_ENTRIES, "an init file")
        if saved.get("format", 1) not in READABLE_FORMATS:
            raise stale(path, "init file", saved.get("format"), INIT_FORMAT, "init")
        params = saved["params"]
        return cls(
            params=params,
            batch_x=saved["batch_x"],
            batch_y=saved["batch_y"],
            batch_indices=saved["batch_indices"],
            projection=Projection(saved["proj_index"], saved["proj_value"], count_params(params)),
            buffers=saved.get("buffers", {}),
        )

    def checksum(self) -> int:
        """CRC-32 of the parameter bytes (names in order): identifies an initialisation."""
        crc = 0
        for name, value in self.params.items():
            crc = zlib.crc32(name.encode(), crc)
            crc = zlib.crc32(value.detach().cpu().contiguous().numpy().tobytes(), crc)
        return crc


def model_of(
    architecture: str,
    dataset: str,
    variant: str,
    buffers: dict[str, Tensor] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> torch.nn.Module:
    """The (parameter-free, meta-device) module of a cell, shaped for its dataset.

    A registered model gets its saved ``buffers`` attached on ``device`` in ``dtype``
    (:func:`goldilocks.factory.model_for`); the built-ins have none.
    """
    shape, classes = DATASET_SHAPES[dataset]
    description = registered(architecture, variant)
    if description is None:
        return build_model(architecture, variant, shape, classes)
    from goldilocks.factory import model_for

    return model_for(description, shape, classes, buffers or {}, device, dtype)


def draw_params(
    architecture: str, dataset: str, variant: str, seed: int
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Initial parameters (float64) and buffers of a seed, from its ``params`` stream.

    Built-ins: :func:`goldilocks.models.init_params` on the meta-device module, no
    buffers. A registered model: its own initialisers, with torch's global generator
    seeded from the same stream (:func:`goldilocks.factory.draw_params`).
    """
    params_stream = generator(seed, "params")
    description = registered(architecture, variant)
    if description is None:
        return init_params(model_of(architecture, dataset, variant), params_stream), {}
    from goldilocks import factory

    shape, classes = DATASET_SHAPES[dataset]
    return factory.draw_params(description, shape, classes, params_stream.initial_seed())


def draw(
    architecture: str,
    dataset: str,
    variant: str,
    seed: int,
    data: dict[str, Tensor],
    batch_size: int,
    subspace_dim: int,
) -> InitialState:
    """The initial state of one seed: parameters, curvature batch and ``R``.

    Args:
        data: the prepared dataset (:func:`goldilocks.data.prepare`).
        batch_size: samples in the curvature batch, drawn from the training split.
        subspace_dim: ``d``, columns of ``R``.
    """
    from goldilocks.data import load_split

    theta, buffers = draw_params(architecture, dataset, variant, seed)
    n_train = len(data["train_labels"])
    batch = torch.randperm(n_train, generator=generator(seed, "batch"))[:batch_size]
    x, y = load_split(data, "train", torch.float64, indices=batch)
    proj = sparse_projection(count_params(theta), subspace_dim, generator(seed, "projection"))
    return InitialState(theta, x, y, batch, proj, buffers)


def check_output_exponent(
    state: InitialState, architecture: str, dataset: str, variant: str
) -> float | None:
    """A registered model's output exponent measured on the seed's curvature batch
    (:func:`goldilocks.factory.check_output_exponent`, which refuses a wrong declaration),
    after :func:`goldilocks.factory.check_output_shape` (logits ``(N, classes)``);
    ``None`` for the built-ins, whose ``k`` and shapes the tests check."""
    description = registered(architecture, variant)
    if description is None:
        return None
    from goldilocks import factory

    model = model_of(architecture, dataset, variant, state.buffers)
    classes = DATASET_SHAPES[dataset][1]
    factory.check_output_shape(description, model, state.params, state.batch_x, classes)
    return factory.check_output_exponent(description, model, state.params, state.batch_x)


def problem(
    state: InitialState,
    architecture: str,
    dataset: str,
    variant: str,
    alpha: float,
    temperature: float,
    device: torch.device,
    dtype: torch.dtype,
) -> Problem:
    """A cell's curvature problem: its model, ``alpha * theta``, the batch and ``R``, on
    ``device`` in ``dtype`` (the parameters are cast first, then scaled; an affine
    LayerNorm's gain and shift and a registered model's ``alpha_exempt`` are not scaled,
    :func:`goldilocks.scaling.alpha_fixed`)."""
    theta = {k: v.to(device=device, dtype=dtype) for k, v in state.params.items()}
    model = model_of(architecture, dataset, variant, state.buffers, device, dtype)
    return Problem(
        model=model,
        params=scale_params(theta, alpha, alpha_fixed(model)),
        x=state.batch_x.to(device=device, dtype=dtype),
        y=state.batch_y.to(device),
        temperature=temperature,
        projection=state.projection,
    )


def random_problem(
    architecture: str,
    dataset: str,
    variant: str,
    batch_size: int,
    subspace_dim: int,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    temperature: float = 1.0,
) -> Problem:
    """A problem on random inputs of the dataset's shape, for benchmarks and device checks.

    Parameters from :func:`goldilocks.models.init_params` with ``Generator(seed)`` (a
    registered model: its own initialisers seeded with ``seed``); the batch (standard
    normal images, uniform labels) from ``seed + 1``; ``R`` from ``seed + 2``. Unscaled
    (alpha = 1).
    """
    shape, classes = DATASET_SHAPES[dataset]
    description = registered(architecture, variant)
    if description is None:
        model = model_of(architecture, dataset, variant)
        theta = init_params(model, torch.Generator().manual_seed(seed))
    else:
        from goldilocks import factory

        theta, buffers = factory.draw_params(description, shape, classes, seed)
        model = model_of(architecture, dataset, variant, buffers, device, dtype)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch_size, *shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (batch_size,), generator=g)
    proj = sparse_projection(
        count_params(theta), subspace_dim, torch.Generator().manual_seed(seed + 2)
    )
    return Problem(
        model=model,
        params={k: v.to(device=device, dtype=dtype) for k, v in theta.items()},
        x=x.to(device=device, dtype=dtype),
        y=y.to(device),
        temperature=temperature,
        projection=proj,
    )
