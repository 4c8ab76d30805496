"""Cost of a full-batch GD epoch per cell, alone and batched, beside the arithmetic floor.

Per architecture/dataset shape (LeNet-300-100 on 1x28x28, LeNet-5 on 3x32x32, ResNet-4 on
1x28x28 and 3x32x32; variant ``combined``, the costliest), on random images of the
dataset's shape:

- ``alone``: one cell's epoch as ``training.train`` runs it (``loss_and_grad``, then the
  update), the best of ``--repeats`` timed calls after a warm-up (best, not median: the
  machine may be shared, and the peaks below are best rates too);
- ``K = 1, 4, 16, 64`` cells in one batch, per engine of ``goldilocks.batched`` (``vmap``:
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
``training.auto_chunk_size`` for the K cells.

    python benchmarks/training.py                       # CPU, 64 images, a few minutes
    python benchmarks/training.py --device cuda --cells 1,4,16,32,64   # full sets
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from timing import sync  # noqa: E402

from goldilocks.batched import make_engine  # noqa: E402
from goldilocks.models import build_model, init_params  # noqa: E402
from goldilocks.training import auto_chunk_size, loss_and_grad  # noqa: E402

#: (architecture, dataset, input shape, full training-set size)
CASES = (
    ("lenet300100", "fmnist", (1, 28, 28), 60_000),
    ("lenet5", "cifar10", (3, 32, 32), 50_000),
    ("resnet4", "fmnist", (1, 28, 28), 60_000),
    ("resnet4", "cifar10", (3, 32, 32), 50_000),
)


#: The clock of :func:`timed`: wall time, or on the CPU with one torch thread optionally
#: the CPU time of the calling thread (which runs all of torch's work then), which does
#: not count the time other processes hold the core: on a shared machine the wall clock
#: measures the load as much as the code.
CLOCK = {"wall": time.perf_counter, "cpu": time.thread_time}


def timed(fn, device: torch.device, repeats: int, clock: str = "wall") -> float:
    """Best time of ``fn()`` over ``repeats`` calls after one warm-up call."""
    now = CLOCK[clock]
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = now()
        fn()
        sync(device)
        times.append(now() - start)
    return min(times)


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


def report(case: str, n: int, path: str, k: int, chunk, seconds: float, ref: dict) -> None:
    """One table line: ``seconds`` for one epoch of ``k`` cells on ``n`` images."""
    per_cell = seconds / k
    print(
        f"{case:22} {n:6d} {path:>6} {k:3d} {chunk or n:6d} {per_cell * 1e3:9.2f} "
        f"{per_cell / n * 1e6:8.2f} {per_cell / ref['floor']:7.1f} "
        f"{ref['alone'] / per_cell:8.2f} {per_cell * ref['full'] / n:7.3f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # strict FP32, as the workflow trains
    torch.backends.cudnn.allow_tf32 = False
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    cells = [int(k) for k in args.cells.split(",")]
    if args.clock is None:
        one_thread = device.type == "cpu" and torch.get_num_threads() == 1
        args.clock = "cpu" if one_thread else "wall"
    if args.clock == "cpu" and (device.type != "cpu" or torch.get_num_threads() != 1):
        parser.error("--clock cpu: only on the CPU with --threads 1")
    gemm, conv = peaks(device, max(args.repeats, 3), args.clock)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    threads = f"{torch.get_num_threads()} threads" if device.type == "cpu" else ""
    load = os.getloadavg()[0]
    print(f"{name}, torch {torch.__version__}, {threads}, {args.clock} clock, load {load:.2f}")
    print(f"FP32 peak: SGEMM {gemm / 1e9:.1f} GFLOP/s, conv3x3 {conv / 1e9:.1f} GFLOP/s")
    print(
        f"{'case':22} {'n':>6} {'path':>6} {'K':>3} {'chunk':>6} {'ms/cell':>9} {'us/img':>8} "
        f"{'xfloor':>7} {'vs alone':>8} {'full s':>7}"
    )
    for arch, dataset, shape, full in CASES:
        if arch not in args.archs.split(","):
            continue
        case = f"{arch}/{dataset}"
        n = args.train_size or (full if device.type == "cuda" else 64)
        model = build_model(arch, args.variant, shape, 10)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, *shape, generator=g).to(device)
        y = torch.randint(0, 10, (n,), generator=g).to(device)
        init = [
            init_params(model, torch.Generator().manual_seed(s), torch.float32)
            for s in range(max(cells))
        ]
        init = [{k: v.to(device) for k, v in p.items()} for p in init]
        chunk = auto_chunk_size(model, shape, n, torch.float32, device)

        def alone(model=model, params=init[0], x=x, y=y, chunk=chunk):
            _, grads = loss_and_grad(model, params, x, y, 1.0, chunk)
            with torch.no_grad():
                return {k: v - 0.01 * grads[k] for k, v in params.items()}

        _, flops = counted(alone)
        ref = {"floor": flops / max(gemm, conv), "full": full}
        ref["alone"] = timed(alone, device, args.repeats, args.clock)
        report(case, n, "alone", 1, chunk, ref["alone"], ref)
        for method in args.methods.split(","):
            for k in cells:
                ch = auto_chunk_size(model, shape, n, torch.float32, device, cells=k)
                engine = make_engine(method, model, init[:k], [1.0] * k, [0.01] * k)

                def step(engine=engine, x=x, y=y, ch=ch, keep=tuple(range(k))):
                    _, grads = engine.loss_and_grad(x, y, ch)
                    engine.update(grads, list(keep))

                seconds = timed(step, device, args.repeats, args.clock)
                report(case, n, method, k, ch, seconds, ref)
                del engine, step
        print(
            f"  floor {case}: {flops / n / 1e6:.2f} MFLOP per image (forward + backward, "
            f"counted), {ref['floor'] / n * 1e6:.2f} us per image at peak",
            flush=True,
        )


if __name__ == "__main__":
    main()
