"""Job entry points: what each Snakemake rule calls, and nothing scientific.

Each function reads its inputs, calls the package, and writes its one output atomically
(temporary name in the same folder, then ``os.replace``), so no reader ever sees a partial
file under its final name. Jobs may run as threads of one Snakemake process
(``--force-use-threads``, the local default) or as processes of their own (cluster), so
they share nothing mutable: every random draw comes from a ``torch.Generator`` seeded
from the cell's keys, and torch's thread count is set by every job for its own thread
(:func:`configure_torch`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import warnings
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from goldilocks.io import write_atomic, write_parquet_atomic

_CONFIGURED = threading.Lock()
_torch_ready = False


def configure_torch(threads: int) -> None:
    """Set torch's thread count for the calling job's thread, and no TF32 (SPEC 4-5).

    Every job calls this. With the OpenMP backend ``torch.set_num_threads`` is not
    process-wide in practice: libgomp keeps the count per OS thread once that thread has
    run a parallel region, so a count set once by the first job did not reach the other
    worker threads of ``--force-use-threads`` (measured: under ``--cores 2`` some cells
    ran with 1 thread and some with 2, and their float32 results differed in the last
    bits). Setting it in each job makes every cell run with its rule's ``threads``.
    """
    global _torch_ready
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    with _CONFIGURED:
        if _torch_ready:
            return
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        # torch.func's first vmap scripts a helper and warns that torch.jit.script is
        # deprecated: torch's own business, noise in every job log.
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
        )
        _torch_ready = True


def resolve_device(device: str) -> torch.device:
    """``auto`` -> ``cuda`` when a GPU is present, else ``cpu``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def hvp_method(method: str, device: torch.device) -> str:
    """``auto`` -> ``vmap`` on a GPU, ``loop`` on the CPU (thread-safe reverse mode)."""
    if method == "auto":
        return "vmap" if device.type == "cuda" else "loop"
    return method


def jvp_method(method: str, device: torch.device, params: Mapping[str, torch.Tensor]) -> str:
    """``auto`` -> ``vmap`` (forward mode) on a GPU and for models with convolutions,
    ``sparse`` (reverse mode, R applied sparsely in linear layers) for MLPs on the CPU:
    the fastest per model type on the CPU, measured (README, "The curvature engine: cost")."""
    if method != "auto":
        return method
    convolutional = any(p.dim() > 2 for p in params.values())
    return "vmap" if device.type == "cuda" or convolutional else "sparse"


def dtype_of(name: str) -> torch.dtype:
    """``float32`` or ``float64`` as a torch dtype."""
    return {"float32": torch.float32, "float64": torch.float64}[name]


def generator(seed: int, stream: str) -> torch.Generator:
    """An independent CPU generator per (seed, purpose), e.g. ``(0, "params")``."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(stream.encode()))


@contextlib.contextmanager
def job_log(path: str | os.PathLike) -> Iterator[logging.Logger]:
    """A logger that writes to this job's log file only (thread-safe, per job)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"goldilocks.job.{path}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    try:
        yield logger
    except Exception as err:
        if getattr(err, "user_facing", False):  # bad input: one line, no traceback
            logger.error("job failed: %s", err)
        else:
            logger.exception("job failed")
        raise
    finally:
        logger.removeHandler(handler)
        handler.close()


def save_atomic(obj, path: str | os.PathLike) -> None:
    """``torch.save`` written atomically."""
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def load(path: str | os.PathLike):
    """Load a tensor file written by this package (tensors and plain containers only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


#: Test hook: ``module:Class`` of a ``torchvision.datasets.CIFAR10`` subclass the data
#: job reads CIFAR-10 with (the tests' miniature archives need the md5 checks off; see
#: ``tests/cifar_mini.py``). Unset in normal use: torchvision's own class runs.
TEST_CIFAR10_ENV = "GOLDILOCKS_TEST_CIFAR10_CLASS"


def _test_cifar_class():
    """The class named by :data:`TEST_CIFAR10_ENV`, or ``None`` when it is unset."""
    import importlib

    spec = os.environ.get(TEST_CIFAR10_ENV)
    if not spec:
        return None
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def prepare_dataset(dataset: str, output: str, log: str, params: Mapping) -> None:
    """Data stage: one dataset, all splits, into one tensor file."""
    from goldilocks.data import prepare

    with job_log(log) as logger:
        start = time.perf_counter()
        cifar_class = _test_cifar_class() if dataset == "cifar10" else None
        if cifar_class is not None:
            logger.warning("%s set: reading CIFAR-10 with %s", TEST_CIFAR10_ENV, cifar_class)
        data = prepare(dataset, params["mirrors"], params["root"], params["download"], cifar_class)
        sizes = {k: tuple(v.shape) for k, v in data.items()}
        logger.info("prepared %s: %s in %.1f s", dataset, sizes, time.perf_counter() - start)
        save_atomic(data, output)


def init_cell(data_path: str, output: str, log: str, keys: Mapping, params: Mapping) -> None:
    """Init stage: unscaled parameters, curvature batch and projection of one seed.

    Everything the seed fixes is drawn here from per-purpose generators: the parameters
    (float64, cast by consumers), the ``batch_size`` curvature samples, and ``R``. The
    scaling is applied later by the consuming job (:func:`goldilocks.scaling.scale_params`).
    """
    from goldilocks.architectures import DATASET_SHAPES
    from goldilocks.curvature import sparse_projection
    from goldilocks.data import load_split
    from goldilocks.models import build_model, count_params, init_params

    with job_log(log) as logger:
        seed = int(keys["seed"])
        shape, classes = DATASET_SHAPES[keys["dataset"]]
        model = build_model(keys["architecture"], keys["variant"], shape, classes)
        theta = init_params(model, generator(seed, "params"))
        data = load(data_path)
        n_train = len(data["train_labels"])
        batch = torch.randperm(n_train, generator=generator(seed, "batch"))[: params["batch_size"]]
        x, y = load_split(data, "train", torch.float64, indices=batch)
        proj = sparse_projection(
            count_params(theta), params["subspace_dim"], generator(seed, "projection")
        )
        save_atomic(
            {
                "params": theta,
                "batch_x": x,
                "batch_y": y,
                "batch_indices": batch,
                "proj_index": proj.index,
                "proj_value": proj.value,
            },
            output,
        )
        logger.info(
            "init %s: P=%d, batch %s", dict(keys.items()), count_params(theta), tuple(x.shape)
        )


def curvature_cell(
    init_path: str, output: str, log: str, keys: Mapping, params: Mapping, threads: int = 0
) -> None:
    """Curvature stage: SPEC section 4 metrics of one cell, one Parquet row."""
    import pandas as pd

    from goldilocks.architectures import DATASET_SHAPES, depth
    from goldilocks.curvature import Projection, measure
    from goldilocks.grid import alpha_and_temperature, canonical_scale
    from goldilocks.models import build_model, count_params
    from goldilocks.scaling import scale_params

    configure_torch(threads)
    with job_log(log) as logger:
        start = time.perf_counter()
        device, dtype = resolve_device(params["device"]), dtype_of(params["dtype"])
        arch, dataset, variant = keys["architecture"], keys["dataset"], keys["variant"]
        scale = canonical_scale(keys["scale"])
        alpha, temperature = alpha_and_temperature(keys["scaling"], scale, arch, variant)
        init = load(init_path)
        shape, classes = DATASET_SHAPES[dataset]
        model = build_model(arch, variant, shape, classes)
        theta = {k: v.to(device=device, dtype=dtype) for k, v in init["params"].items()}
        theta = scale_params(theta, alpha)
        x = init["batch_x"].to(device=device, dtype=dtype)
        y = init["batch_y"].to(device)
        proj = Projection(init["proj_index"], init["proj_value"], count_params(theta))
        method = hvp_method(params["hvp_method"], device)
        jvp = jvp_method(params["jvp_method"], device, theta)
        row, ratios = measure(model, theta, x, y, temperature, proj, method, jvp_method=jvp)
        d = depth(arch, variant)
        record = {
            "architecture": arch,
            "dataset": dataset,
            "variant": variant,
            "scaling": keys["scaling"],
            "scale": scale,
            "alpha": alpha,
            "temperature": temperature,
            "seed": int(keys["seed"]),
            "depth": d.depth,
            "residual_depth": d.residual_depth,
            "n_params": count_params(theta),
            **row,
            "dtype": params["dtype"],
            "device": device.type,
            **{f"layer_ratio.{k}": v for k, v in ratios.items()},
        }
        record["compute_seconds"] = time.perf_counter() - start
        write_parquet_atomic(pd.DataFrame([record]), output)
        logger.info(
            "curvature %s: Tr/||H||_F=%.4g in %.2f s",
            dict(keys.items()),
            row["hessian_trace_ratio"],
            record["compute_seconds"],
        )


#: Training settings a checkpoint must share with the job that continues it.
RESUME_PARAMS = (
    "dtype",
    "epochs",
    "log_every",
    "train_subset",
    "test_subset",
    "chunk_size",
    "curvature_every",
)


def init_checksum(params: Mapping[str, torch.Tensor]) -> int:
    """CRC-32 of the parameter bytes (names in order): identifies an initialisation."""
    crc = 0
    for name, value in params.items():
        crc = zlib.crc32(name.encode(), crc)
        crc = zlib.crc32(value.detach().cpu().contiguous().numpy().tobytes(), crc)
    return crc


def resume_state(path: Path, key: Mapping, device: torch.device, logger: logging.Logger):
    """The training state saved at ``path`` if it was saved for ``key``, else ``None``.

    A checkpoint of another configuration (different epochs, learning rate, subset,
    initialisation...) or one that cannot be read is deleted with a log line, so the cell
    starts from its initialisation instead of continuing someone else's run.

    Returns:
        ``(TrainState, seconds)``, the state and the compute time spent before the
        checkpoint, or ``None``.
    """
    from goldilocks.training import TrainState

    if not path.exists():
        return None
    try:
        saved = load(path)
    except Exception as err:  # unreadable (e.g. truncated on disk): start over
        logger.info("checkpoint: discarded unreadable %s (%s)", path, err)
        path.unlink(missing_ok=True)
        return None
    if saved.get("key") != dict(key):
        diff = {
            k: (saved.get("key", {}).get(k), v)
            for k, v in key.items()
            if saved.get("key", {}).get(k) != v
        }
        logger.info("checkpoint: discarded stale %s, saved for other settings %s", path, diff)
        path.unlink(missing_ok=True)
        return None
    params = {k: v.to(device) for k, v in saved["params"].items()}
    logger.info("checkpoint: resumed from %s at epoch %d", path, saved["epoch"])
    return TrainState(params, saved["epoch"], saved["rows"]), saved["seconds"]


def train_cell(
    init_path: str,
    data_path: str,
    output: str,
    log: str,
    keys: Mapping,
    params: Mapping,
    threads: int = 0,
    checkpoint: str | None = None,
    checkpoint_every: int | None = None,
) -> None:
    """Training stage: full-batch GD of one cell, one Parquet row per logged epoch.

    Every ``checkpoint_every`` epochs the state (parameters, next epoch, rows so far, the
    settings it belongs to) is saved atomically to ``checkpoint``, a side file that
    Snakemake does not know as an output and so does not delete when the job dies.
    A rerun resumes from it when its settings match (bit-identical to an uninterrupted
    run on the same device and thread count: GD is a pure function of the parameters),
    and the file is removed once the cell's Parquet is written.
    """
    import pandas as pd

    from goldilocks.architectures import DATASET_SHAPES
    from goldilocks.data import load_split
    from goldilocks.grid import alpha_and_temperature, canonical_scale, lr_factor
    from goldilocks.models import build_model
    from goldilocks.scaling import scale_params
    from goldilocks.training import TrainState, train

    configure_torch(threads)
    with job_log(log) as logger:
        start = time.perf_counter()
        device, dtype = resolve_device(params["device"]), dtype_of(params["dtype"])
        arch, dataset, variant = keys["architecture"], keys["dataset"], keys["variant"]
        seed, scaling = int(keys["seed"]), keys["scaling"]
        scale, lr_base = canonical_scale(keys["scale"]), canonical_scale(keys["lr_base"])
        alpha, temperature = alpha_and_temperature(scaling, scale, arch, variant)
        lr = lr_base * lr_factor(scaling, scale, arch, variant, params["alpha_lr_rule"])
        data = load(data_path)
        subset = None
        if params["train_subset"]:
            n = len(data["train_labels"])
            subset = torch.randperm(n, generator=generator(seed, "subset"))[
                : params["train_subset"]
            ]
        test_subset = None
        if params["test_subset"]:
            n = len(data["test_labels"])
            test_subset = torch.randperm(n, generator=generator(seed, "test"))[
                : params["test_subset"]
            ]
        train_data = load_split(data, "train", dtype, device, subset)
        test_data = load_split(data, "test", dtype, device, test_subset)
        shape, classes = DATASET_SHAPES[dataset]
        model = build_model(arch, variant, shape, classes)
        init = load(init_path)
        # What a checkpoint must have been saved for to be continued by this job.
        resume_key = {
            "init": init_checksum(init["params"]),
            "alpha": alpha,
            "temperature": temperature,
            "lr": lr,
            "device": device.type,
            **{k: params[k] for k in RESUME_PARAMS},
        }
        ckpt = Path(checkpoint) if checkpoint else None
        resumed = resume_state(ckpt, resume_key, device, logger) if ckpt else None
        if resumed is None:
            theta = {k: v.to(device=device, dtype=dtype) for k, v in init["params"].items()}
            state, seconds_before = TrainState(scale_params(theta, alpha)), 0.0
        else:
            state, seconds_before = resumed

        def save_checkpoint(s: TrainState) -> None:
            if s.epoch % checkpoint_every or s.epoch >= params["epochs"]:
                return
            seconds = seconds_before + time.perf_counter() - start
            saved = {"key": resume_key, "epoch": s.epoch, "rows": s.rows, "seconds": seconds}
            save_atomic({**saved, "params": {k: v.cpu() for k, v in s.params.items()}}, ckpt)
            logger.info("checkpoint: saved epoch %d", s.epoch)

        state = train(
            model,
            state,
            train_data,
            test_data,
            temperature,
            lr,
            params["epochs"],
            params["log_every"],
            params["chunk_size"],
            probe=_curvature_probe(model, init, temperature, device, dtype, params),
            probe_every=params["curvature_every"],
            on_epoch=save_checkpoint if ckpt and checkpoint_every else None,
        )
        seconds = seconds_before + time.perf_counter() - start
        frame = pd.DataFrame(state.rows)
        meta = {
            "architecture": arch,
            "dataset": dataset,
            "variant": variant,
            "scaling": scaling,
            "scale": scale,
            "alpha": alpha,
            "temperature": temperature,
            "seed": seed,
            "lr_base": lr_base,
            "lr": lr,
        }
        for i, (k, v) in enumerate(meta.items()):
            frame.insert(i, k, v)
        frame["diverged_epoch"] = frame["diverged_epoch"].astype("Int64")
        frame["compute_seconds"] = seconds
        write_parquet_atomic(frame, output)
        if ckpt:
            ckpt.unlink(missing_ok=True)
        last = state.rows[-1]
        logger.info(
            "train %s: lr=%.4g epoch %d train_acc=%.4f diverged=%s in %.1f s",
            dict(keys.items()),
            lr,
            last["epoch"],
            last["train_acc"],
            last["diverged"],
            seconds,
        )


def _curvature_probe(model, init: Mapping, temperature: float, device, dtype, params: Mapping):
    """Curvature along training: the SPEC section 4 matrix metrics at given parameters.

    Same curvature batch and projection R as the cell's curvature at initialisation (from
    its init file), at the training precision. Returns ``params -> {hessian_*, gterm_*,
    hterm_*}``.
    """
    from goldilocks.curvature import MATRICES, Projection, measure
    from goldilocks.models import count_params

    x = init["batch_x"].to(device=device, dtype=dtype)
    y = init["batch_y"].to(device)
    proj = Projection(init["proj_index"], init["proj_value"], count_params(init["params"]))
    method = hvp_method(params["hvp_method"], device)
    jvp = jvp_method(params["jvp_method"], device, init["params"])

    def probe(theta: dict) -> dict:
        row, _ = measure(model, theta, x, y, temperature, proj, method, jvp_method=jvp)
        return {k: v for k, v in row.items() if k.split("_", 1)[0] in MATRICES}

    return probe


def kl_pair(
    init_paths: list[str], output: str, log: str, keys: Mapping, params: Mapping, threads: int = 0
) -> None:
    """KL stage (figure 3): the output-scaling KL of one pair's LayerNorm variants.

    One row per (variant, seed, alpha): ``init_paths[i]`` is the init file of
    ``params["cells"][i] = (variant, seed)``; the batch is that seed's curvature batch,
    everything in float64 (:mod:`goldilocks.output_scaling`). alpha runs over
    ``params["scales"]`` (the ``alpha_linear`` grid spec, times ``L`` of the variant).
    """
    import pandas as pd

    from goldilocks.architectures import DATASET_SHAPES, depth
    from goldilocks.grid import log_grid
    from goldilocks.models import build_model
    from goldilocks.output_scaling import output_scaling_table

    configure_torch(threads)
    with job_log(log) as logger:
        start = time.perf_counter()
        arch, dataset = keys["architecture"], keys["dataset"]
        shape, classes = DATASET_SHAPES[dataset]
        frames = []
        for path, (variant, seed) in zip(init_paths, params["cells"], strict=True):
            init = load(path)
            model = build_model(arch, variant, shape, classes)
            alphas = log_grid(params["scales"], depth(arch, variant).depth)
            frame = output_scaling_table(model, init["params"], init["batch_x"], alphas)
            for i, (k, v) in enumerate(
                {"architecture": arch, "dataset": dataset, "variant": variant, "seed": seed}.items()
            ):
                frame.insert(i, k, v)
            frame["batch_size"] = len(init["batch_x"])
            frames.append(frame)
            logger.info("kl %s/%s seed %d: max KL %.3g", arch, variant, seed, frame["kl"].max())
        write_parquet_atomic(pd.concat(frames, ignore_index=True), output)
        seconds = time.perf_counter() - start
        logger.info("kl %s_%s: %d rows in %.2f s", arch, dataset, sum(map(len, frames)), seconds)
