"""Cost of the projected Hessian: our paths against the common subspace approach.

On one model, batch and R, in one run, times
  (a) the subspace approach: the Hessian of ``w -> L(theta + R w)`` by
      ``torch.autograd.functional.hessian`` (R dense, differentiated through),
  (b) our H path (``projected_hessian``; the double-backward loop and
      ``vmap(jvp(grad))`` are both timed, the ratios use the one ``auto`` picks),
  (c) our G path (``projected_jacobian`` + ``gauss_newton``; the reverse-mode loop, the
      sparse batched reverse pass and forward-mode vmap all timed, ratios with ``auto``'s),
  (d) one plain loss gradient,
and prints a/b, c/b and b/d (the cost of H in gradients) per dtype. The dense rows of R
are built once and given to every method, as ``measure`` does (their cost is printed as
``R rows``); ``cell`` is one whole ``measure`` call (forward pass and gradient shared, H,
J R, G, eigenvalues, diagnostics). Then the peak memory of each method, measured in a
fresh process on the CPU (peak RSS above the process's baseline, sampled every 0.5 ms
after one warm-up call), in-process on a GPU (``torch.cuda.max_memory_allocated`` above
the allocation before the call).

    python -m benchmarks.curvature [--arch lenet300100] [--device auto] [--repeats 3]
    python -m benchmarks.curvature --arch resnet4 --dataset cifar10 --skip-subspace
    python -m benchmarks.curvature --config configs/vit.yaml --arch vit --variant preln
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from benchmarks.timing import device_or_exit, timed
from goldilocks.curvature import (
    gauss_newton,
    measure,
    projected_hessian,
    projected_jacobian,
    resolve_methods,
)
from goldilocks.initial import random_problem
from goldilocks.models import count_params
from goldilocks.runtime import configure_torch

ROOT = Path(__file__).resolve().parents[1]


def setup(arch, dataset, variant, dtype, device, batch, dim):
    return random_problem(arch, dataset, variant, batch, dim, device, dtype)


def methods(problem):
    """The measured computations, as zero-argument callables."""
    params, proj, loss = problem.params, problem.projection, problem.loss
    any_p = next(iter(params.values()))
    rows = proj.dense(any_p.dtype, any_p.device)  # (d, P), built once as in measure()

    def subspace():
        flat0 = torch.cat([p.reshape(-1) for p in params.values()])
        shapes = [(k, p.shape, p.numel()) for k, p in params.items()]

        def in_subspace(w):
            flat = flat0 + w @ rows
            out, start = {}, 0
            for k, shape, n in shapes:
                out[k] = flat[start : start + n].view(shape)
                start += n
            return loss(out)

        w0 = torch.zeros(proj.dim, dtype=any_p.dtype, device=any_p.device)
        return torch.autograd.functional.hessian(in_subspace, w0)

    def gterm(method):
        jr = projected_jacobian(problem, method, rows=rows)
        return gauss_newton(jr, problem.logits(params), problem.temperature)

    def gradient():
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        return torch.autograd.grad(loss(leaves), list(leaves.values()))

    device = any_p.device
    auto = resolve_methods("auto", "auto", device, params)
    return {
        "a_subspace": subspace,
        "b_loop": lambda: projected_hessian(problem, "loop", rows=rows),
        "b_vmap": lambda: projected_hessian(problem, "vmap", rows=rows),
        "c_loop": lambda: gterm("loop"),
        "c_sparse": lambda: gterm("sparse"),
        "c_vmap": lambda: gterm("vmap"),
        "d_gradient": gradient,
        "r_rows": lambda: proj.dense(any_p.dtype, device),
        "cell": lambda: measure(problem, *auto),
    }


def peak_memory(args, name, dtype):
    """Peak memory of one method in a fresh process, in MiB."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--dtype",
        dtype,
        "--arch",
        args.arch,
        "--dataset",
        args.dataset,
        "--variant",
        args.variant,
        "--device",
        args.device,
        "--batch",
        str(args.batch),
        "--dim",
        str(args.dim),
        *(["--config", args.config] if args.config else []),
    ]
    # A fixed mmap threshold makes glibc return every large block to the system on free,
    # so RSS follows the tensors (with the default dynamic threshold freed blocks stay
    # in the heap and a second call's peak is invisible).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["mib"]


def child(args, device):
    """Peak RSS of one method, CPU only (a GPU is measured in-process: cuda_peak)."""
    dtype = getattr(torch, args.dtype)
    fn = methods(setup(args.arch, args.dataset, args.variant, dtype, device, args.batch, args.dim))[
        args.child
    ]
    fn()  # warm-up: lazy allocations and caches settle before the baseline
    base = _rss()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    fn()
    done.set()
    sampler.join()
    print(json.dumps({"mib": (peak[0] - base) / 2**20}))


def _rss() -> int:
    """Current resident set size in bytes (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="lenet300100", help="architecture (or a --config model)")
    parser.add_argument("--dataset", default="fmnist", help="shape of the random batch")
    parser.add_argument("--variant", default="homogeneous", help="variant name")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--batch", type=int, default=128, help="curvature batch size")
    parser.add_argument("--dim", type=int, default=50, help="subspace dimension d")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--dtypes", default="float32,float64", help="comma-separated")
    parser.add_argument("--skip-subspace", action="store_true", help="skip (a), the slow one")
    parser.add_argument("--skip-memory", action="store_true", help="timings only")
    parser.add_argument("--config", help="register the models of this config (--arch may name one)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.config:  # users' models: factories import from the repository root too
        import yaml

        from goldilocks.registered import register_models

        sys.path.insert(1, str(ROOT))
        register_models(yaml.safe_load(Path(args.config).read_text()))
    configure_torch(args.threads)  # threads (0: torch's default) and TF32 off
    device = device_or_exit(args.device)
    if args.child:
        child(args, device)
        return
    name = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"{args.arch}/{args.dataset} {args.variant}, batch {args.batch}, d {args.dim}, {name}, "
        f"torch {torch.__version__}; median of {args.repeats}"
    )
    columns = ["a_subspace", "b_loop", "b_vmap", "c_loop", "c_sparse", "c_vmap", "d_gradient"]
    columns += ["r_rows", "cell"]
    heads = ["a subspace", "b loop", "b vmap", "c loop", "c sparse", "c vmap", "d grad"]
    heads += ["R rows", "cell"]
    print(f"{'dtype':8} {'P':>8} " + " ".join(f"{h:>10}" for h in heads) + " | a/b   c/b   b/d")
    for dtype_name in args.dtypes.split(","):
        dtype = getattr(torch, dtype_name)
        problem = setup(args.arch, args.dataset, args.variant, dtype, device, args.batch, args.dim)
        params = problem.params
        fns = methods(problem)
        t = {
            k: (
                float("nan")
                if k == "a_subspace" and args.skip_subspace
                else timed(fns[k], device, args.repeats)
            )
            for k in columns
        }
        auto_h, auto_j = resolve_methods("auto", "auto", device, params)
        b, c = t[f"b_{auto_h}"], t[f"c_{auto_j}"]
        print(
            f"{dtype_name:8} {count_params(params):8d} "
            + " ".join(f"{t[k]:10.4f}" for k in columns)
            + f" | {t['a_subspace'] / b:5.2f} {c / b:5.2f} {b / t['d_gradient']:5.1f}"
            + f"   (b = {auto_h}, c = {auto_j})"
        )
    if args.skip_memory:
        return
    names = ["b_loop", "b_vmap", "c_loop", "c_sparse", "c_vmap", "d_gradient", "cell"]
    if not args.skip_subspace:
        names.insert(0, "a_subspace")
    for dtype_name in args.dtypes.split(","):
        if device.type == "cuda":  # the allocator's own peak counter: no fresh process needed
            problem = setup(
                args.arch,
                args.dataset,
                args.variant,
                getattr(torch, dtype_name),
                device,
                args.batch,
                args.dim,
            )
            fns = methods(problem)
            mem = {n: cuda_peak(fns[n]) for n in names}
        else:
            mem = {n: peak_memory(args, n, dtype_name) for n in names}
        print(
            f"peak memory {dtype_name} (MiB): " + ", ".join(f"{n} {m:.0f}" for n, m in mem.items())
        )


def cuda_peak(fn) -> float:
    """Peak GPU memory of one call above what was allocated before it, in MiB."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


if __name__ == "__main__":
    main()
