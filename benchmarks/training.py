"""Cost of a full-batch GD epoch per cell, alone and batched, beside the arithmetic floor.

Per architecture/dataset shape (LeNet-300-100 on 1x28x28, LeNet-5 on 3x32x32, ResNet-4 on
1x28x28 and 3x32x32; variant ``combined``, the costliest), on random images of the
dataset's shape:

- ``alone``: one cell's epoch as ``training.train`` runs it (a batch of one, engine
  ``loop``: ``loss_and_grad``, then the update), the best of ``--repeats`` timed calls
  after a warm-up (best, not median: the machine may be shared, and the peaks below are
  best rates too);
- ``K = 1, 4, 16, 64`` cells in one batch, per engine of ``goldilocks.engines`` (``vmap``:
  stacked parameters, one batched forward and backward; ``loop``: the cells one by one):
  one epoch of every cell (``loss_and_grad`` + ``update``), timed the same way;
- the floor: the FLOPs one cell's forward and backward actually execute, counted with
  ``torch.utils.flop_counter.FlopCounterMode`` on the alone path (matrix products and
  convolutions; elementwise work is not counted), divided by the device's FP32 peak,
  the larger of the rates measured on a large SGEMM and on a large convolution (not on
  the models' own small layers). Batched steps are not counted: the counter's formula
  for a grouped convolution's backward ignores the groups (2.5x too many FLOPs on a
  16-channel 3x3 convolution in 4 groups, checked against 4 single convolutions).

Columns: ``ms/cell`` one cell's epoch on ``n`` images (batched: the batch's epoch / K),
``us/img`` per cell and image, ``xfloor`` that time over the floor, ``vs alone`` the
speed-up over the alone path, ``full s`` the cell's epoch scaled linearly to the
dataset's full training set (60,000 or 50,000). Time is the calling thread's CPU time on
the CPU with one torch thread (``--clock``), wall time otherwise. Strict FP32: TF32 is
off. Runs on the CPU always, on a GPU with ``--device cuda``; chunking:
``memory.auto_chunk_size`` for the K cells.

``--save FILE`` also writes the measurements as JSON, rewritten after every case (a run
cut short keeps the cases it finished); ``benchmarks/paper_cost.py --costs FILE`` takes
its training costs from there instead of measuring them again.

    python -m benchmarks.training                       # CPU, 64 images, a few minutes
    python -m benchmarks.training --device cuda --cells 1,4,16,32,64   # full sets
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.timing import CLOCK, device_or_exit
from benchmarks.timing import timed as _timed
from goldilocks.engines import make_engine
from goldilocks.io import write_atomic
from goldilocks.memory import resolve_chunk_size
from goldilocks.models import build_model, init_params
from goldilocks.runtime import configure_torch

#: (architecture, dataset, input shape, full training-set size)
CASES = (
    ("lenet300100", "fmnist", (1, 28, 28), 60_000),
    ("lenet5", "cifar10", (3, 32, 32), 50_000),
    ("resnet4", "fmnist", (1, 28, 28), 60_000),
    ("resnet4", "cifar10", (3, 32, 32), 50_000),
)


def timed(fn, device: torch.device, repeats: int, clock: str = "wall") -> float:
    """Best time of ``fn()`` over ``repeats`` calls after one warm-up call."""
    return _timed(fn, device, repeats, clock, best=True)


def counted(fn) -> tuple[object, int]:
    """``fn()`` under a FLOP counter: its result and the FLOPs it executed."""
    with FlopCounterMode(display=False) as counter:
        out = fn()
    return out, counter.get_total_flops()


def peaks(device: torch.device, repeats: int, clock: str) -> tuple[float, float]:
    """FP32 FLOP/s of a large SGEMM and a large 3x3 convolution on ``device``."""
    gpu = device.type == "cuda"
    n = 8192 if gpu else 2048
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, generator=g)
    b = torch.randn(n, n, device=device, generator=g)
    gemm = 2 * n**3 / timed(lambda: a @ b, device, repeats, clock)
    batch, ch, side = (128, 256, 56) if gpu else (16, 128, 28)
    x = torch.randn(batch, ch, side, side, device=device, generator=g)
    w = torch.randn(ch, ch, 3, 3, device=device, generator=g)
    _, flops = counted(lambda: F.conv2d(x, w, padding=1))
    conv = flops / timed(lambda: F.conv2d(x, w, padding=1), device, repeats, clock)
    return gemm, conv


def epoch_costs(
    arch: str,
    shape: tuple[int, ...],
    n: int,
    cells: list[int],
    methods: list[str],
    device: torch.device,
    peak: float,
    repeats: int = 2,
    clock: str = "wall",
    variant: str = "combined",
    chunk="auto",
) -> dict:
    """One full-batch GD epoch of ``arch`` on ``n`` random images of ``shape`` (float32,
    strict FP32), per cell: alone (``training.train``'s path), and batched, for every
    engine in ``methods`` and K in ``cells`` (``goldilocks.engines.make_engine``: the
    batch's epoch / K); and the floor, the FLOPs one cell's forward and backward execute
    (counted) over ``peak``.

    Returns:
        ``{"flops": FLOPs, "floor": s, "alone": (s, chunk), (method, K): (s, chunk)}``,
        seconds per cell and epoch with the chunk size used (``None``: one chunk).
    """
    model = build_model(arch, variant, shape, 10)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, *shape, generator=g).to(device)
    y = torch.randint(0, 10, (n,), generator=g).to(device)
    init = [
        init_params(model, torch.Generator().manual_seed(s), torch.float32)
        for s in range(max(cells, default=1))
    ]
    init = [{k: v.to(device) for k, v in p.items()} for p in init]

    def epoch(method: str, k: int):
        """One epoch of ``k`` cells with ``method``'s engine, as the epoch loop of
        ``training.train_batched`` runs it, and the chunk size it uses."""
        ch = resolve_chunk_size(chunk, model, x, k)
        engine = make_engine(method, model, init[:k], [1.0] * k, [0.01] * k)

        def step(keep=tuple(range(k))):
            _, grads = engine.loss_and_grad(x, y, ch)
            engine.update(grads, list(keep))

        return step, ch

    alone, one = epoch("loop", 1)  # training.train: a batch of one, engine loop
    _, flops = counted(alone)
    costs = {
        "flops": flops,
        "floor": flops / peak,
        "alone": (timed(alone, device, repeats, clock), one),
    }
    for method in methods:
        for k in cells:
            step, ch = epoch(method, k)
            costs[(method, k)] = (timed(step, device, repeats, clock) / k, ch)
            del step
    return costs


def report(case: str, n: int, path: str, k: int, cost: tuple, costs: dict, full: int) -> None:
    """One table line: ``cost`` = (seconds per cell and epoch on ``n`` images, chunk)."""
    per_cell, chunk = cost
    alone = costs["alone"][0]
    print(
        f"{case:22} {n:6d} {path:>6} {k:3d} {chunk or n:6d} {per_cell * 1e3:9.2f} "
        f"{per_cell / n * 1e6:8.2f} {per_cell / costs['floor']:7.1f} "
        f"{alone / per_cell:8.2f} {per_cell * full / n:7.3f}",
        flush=True,
    )


def device_name(device: torch.device) -> str:
    """The GPU's name, or ``CPU``."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def saved_case(arch: str, dataset: str, shape, n: int, variant: str, chunk, costs: dict) -> dict:
    """One case of ``--save``'s JSON: what was measured and how (``epoch_costs``'s
    seconds per cell and epoch, with the chunk size used)."""
    batched = {}
    for key, value in costs.items():
        if isinstance(key, tuple):
            method, k = key
            batched.setdefault(method, {})[str(k)] = list(value)
    return {
        "architecture": arch,
        "dataset": dataset,
        "shape": list(shape),
        "n": n,
        "variant": variant,
        "chunk_setting": chunk,
        "flops": costs["flops"],
        "floor": costs["floor"],
        "alone": list(costs["alone"]),
        "batched": batched,
    }


def save(path: str, device: torch.device, peak: float, clock: str, cases: list) -> None:
    """Write ``--save``'s JSON atomically (a reader never sees half a file)."""
    doc = {"device": device_name(device), "torch": torch.__version__, "peak": peak,
           "clock": clock, "tf32": False, "cases": cases}  # fmt: skip
    write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=1)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--train-size", type=int, default=None, help="default: 64 on the "
                        "CPU, the dataset's full size on a GPU")  # fmt: skip
    parser.add_argument("--cells", default="1,4,16,64", help="batch sizes K")
    parser.add_argument("--methods", default="vmap,loop")
    parser.add_argument("--archs", default="lenet300100,lenet5,resnet4")
    parser.add_argument("--variant", default="combined")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--clock", choices=sorted(CLOCK), default=None,
                        help="default: cpu on the CPU with one thread, else wall")  # fmt: skip
    parser.add_argument("--save", default=None, help="also write the measurements as JSON")
    args = parser.parse_args()
    device = setup(args.device, args.threads)
    cells = [int(k) for k in args.cells.split(",")]
    if args.clock is None:
        one_thread = device.type == "cpu" and torch.get_num_threads() == 1
        args.clock = "cpu" if one_thread else "wall"
    if args.clock == "cpu" and (device.type != "cpu" or torch.get_num_threads() != 1):
        parser.error("--clock cpu: only on the CPU with --threads 1")
    peak = describe(device, max(args.repeats, 3), args.clock)
    print(
        f"{'case':22} {'n':>6} {'path':>6} {'K':>3} {'chunk':>6} {'ms/cell':>9} {'us/img':>8} "
        f"{'xfloor':>7} {'vs alone':>8} {'full s':>7}"
    )
    saved: list = []
    for arch, dataset, shape, full in CASES:
        if arch not in args.archs.split(","):
            continue
        case = f"{arch}/{dataset}"
        n = args.train_size or (full if device.type == "cuda" else 64)
        methods = args.methods.split(",")
        costs = epoch_costs(
            arch, shape, n, cells, methods, device, peak, args.repeats, args.clock, args.variant
        )
        report(case, n, "alone", 1, costs["alone"], costs, full)
        for method in methods:
            for k in cells:
                report(case, n, method, k, costs[(method, k)], costs, full)
        print(
            f"  floor {case}: {costs['flops'] / n / 1e6:.2f} MFLOP per image (forward + "
            f"backward, counted), {costs['floor'] / n * 1e6:.2f} us per image at peak",
            flush=True,
        )
        if args.save:
            saved.append(saved_case(arch, dataset, shape, n, args.variant, "auto", costs))
            save(args.save, device, peak, args.clock, saved)


def setup(device: str, threads: int) -> torch.device:
    """The device (``auto``: a GPU when present), strict FP32 (TF32 off, as the workflow
    trains by default) and on the CPU ``threads`` torch threads."""
    dev = device_or_exit(device)
    configure_torch(threads if dev.type == "cpu" else 0)  # and TF32 off
    return dev


def describe(device: torch.device, repeats: int, clock: str) -> float:
    """Print the machine and its measured FP32 peaks; return the peak (FLOP/s)."""
    gemm, conv = peaks(device, repeats, clock)
    name = device_name(device)
    threads = f"{torch.get_num_threads()} threads" if device.type == "cpu" else ""
    load = os.getloadavg()[0]
    print(f"{name}, torch {torch.__version__}, {threads}, {clock} clock, load {load:.2f}")
    print(f"FP32 peak: SGEMM {gemm / 1e9:.1f} GFLOP/s, conv3x3 {conv / 1e9:.1f} GFLOP/s")
    return max(gemm, conv)


if __name__ == "__main__":
    main()
