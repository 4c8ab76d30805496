"""The convolutions of K cells at once, four ways: which one a batched engine should use.

``vmap`` (``goldilocks.engines``, engine ``vmap``) turns the convolutions of K stacked
cells into one grouped convolution (``groups=K``) wherever the input differs per cell,
i.e. every convolution after the first (the first sees the shared images: one ordinary
convolution with ``K x O`` output channels). With 6 or 16 channels per group that
grouped convolution is the risk of the LeNet-5 and ResNet-4 goal (docs/performance.md,
"Training many cells at once"): grouped convolutions with few channels per group are
memory-bound and were reported slower than separate convolutions on GPUs
(pytorch/pytorch#73764, #70954). This measures, for the grouped layers of LeNet-5 and
ResNet-4 and K cells, one forward and backward (gradients of input and weight, as
training needs) of:

- ``grouped``: one ``conv2d(groups=K)``, the layout ``vmap`` builds;
- ``grouped_cl``: the same in ``channels_last`` memory format;
- ``separate``: K ordinary convolutions one after another (the ``loop`` engine's shape);
- ``unfold_bmm``: im2col (``F.unfold``) and one batched matrix product of K
  ``(O x C k k) @ (C k k x n L)`` products.

Columns: ``ms`` per forward and backward of all K cells, ``us/cell-img`` that over K and
the ``n`` images, ``%peak`` the counted FLOPs (one cell's convolution, forward and
backward, under ``torch.utils.flop_counter``, times K) per second over the device's FP32
peak (``benchmarks/training.py``'s SGEMM and conv3x3), ``vs grouped`` the speed-up over
``grouped``, ``err`` the largest difference of the output and both gradients from
``grouped``'s, relative to their largest entry. Strict FP32, TF32 off; best of
``--repeats`` timed calls after a warm-up, wall clock (``--clock cpu`` on the CPU with one
thread).

    python -m benchmarks.grouped_conv                     # CPU: K 4, 16 images, seconds
    python -m benchmarks.grouped_conv --device cuda       # K 32, 1,024 images
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from benchmarks.training import counted, describe, setup, timed

#: (layer, channels in, channels out, kernel, padding, input side): the grouped layers
LAYERS = (
    ("lenet5/cifar10 conv2", 6, 16, 5, 0, 14),
    ("resnet4/fmnist block", 16, 16, 3, 1, 28),
    ("resnet4/cifar10 block", 16, 16, 3, 1, 32),
)


def grouped(x, w, pad, channels_last=False):
    """``x (K, n, C, H, W)``, ``w (K, O, C, k, k)`` -> one ``conv2d(groups=K)``."""
    k, n, c, h, s = x.shape
    xg = x.transpose(0, 1).reshape(n, k * c, h, s)  # vmap's layout
    wg = w.reshape(-1, *w.shape[2:])
    if channels_last:
        xg = xg.contiguous(memory_format=torch.channels_last)
        wg = wg.contiguous(memory_format=torch.channels_last)
    y = F.conv2d(xg, wg, padding=pad, groups=k)
    return y.view(n, k, -1, *y.shape[2:]).transpose(0, 1)  # (K, n, O, H', W')


def separate(x, w, pad):
    """K ordinary convolutions, one per cell."""
    return torch.stack([F.conv2d(x[i], w[i], padding=pad) for i in range(len(w))])


def unfold_bmm(x, w, pad):
    """im2col, then one batched matrix product over the K cells."""
    k, n, c, h, s = x.shape
    kern = w.shape[-1]
    cols = F.unfold(x.reshape(k * n, c, h, s), kern, padding=pad)  # (K n, C k k, L)
    ckk, length = cols.shape[1:]
    cols = cols.view(k, n, ckk, length).transpose(1, 2).reshape(k, ckk, n * length)
    y = torch.bmm(w.reshape(k, w.shape[1], ckk), cols)  # (K, O, n L)
    side = h + 2 * pad - kern + 1
    return y.view(k, -1, n, side, side).transpose(1, 2)  # (K, n, O, H', W')


WAYS = {
    "grouped": grouped,
    "grouped_cl": lambda x, w, pad: grouped(x, w, pad, channels_last=True),
    "separate": separate,
    "unfold_bmm": unfold_bmm,
}


def forward_backward(way, x, w, pad, grad_out):
    """One forward and backward: the output and the gradients of ``x`` and ``w``."""
    x, w = x.detach().requires_grad_(True), w.detach().requires_grad_(True)
    y = WAYS[way](x, w, pad)
    gx, gw = torch.autograd.grad(y, (x, w), grad_out)
    return y.detach(), gx, gw


def relative_error(a, b) -> float:
    """Largest difference of the tensors ``a`` from ``b``, relative to ``b``'s largest entry."""
    return max(
        ((u - v).abs().max() / v.abs().max().clamp_min(1e-30)).item()
        for u, v in zip(a, b, strict=True)
    )


def measure(layer, cells: int, n: int, device, peak: float, repeats: int, clock: str, ways):
    """Print one row per way for ``layer`` and ``cells`` cells on ``n`` images."""
    name, c, o, kern, pad, side = layer
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(cells, n, c, side, side, device=device, generator=g)
    w = torch.randn(cells, o, c, kern, kern, device=device, generator=g) / (c * kern * kern) ** 0.5
    out = side + 2 * pad - kern + 1
    grad_out = torch.randn(cells, n, o, out, out, device=device, generator=g)
    _, one = counted(lambda: forward_backward("separate", x[:1], w[:1], pad, grad_out[:1]))
    flops = one * cells
    reference = forward_backward("grouped", x, w, pad, grad_out)
    base = None
    for way in ways:
        try:
            err = relative_error(forward_backward(way, x, w, pad, grad_out), reference)
            t = timed(lambda way=way: forward_backward(way, x, w, pad, grad_out), device,
                      repeats, clock)  # fmt: skip
        except torch.OutOfMemoryError:
            print(f"{name:22} {cells:>3} {n:>6} {way:>11}  out of memory", flush=True)
            continue
        base = t if way == "grouped" else base
        speedup = f"{base / t:10.2f}" if base else f"{'-':>10}"
        print(
            f"{name:22} {cells:>3} {n:>6} {way:>11} {t * 1e3:9.2f} {t / cells / n * 1e6:12.3f} "
            f"{100 * flops / t / peak:6.1f} {speedup} {err:8.1e}",
            flush=True,
        )
        if device.type == "cuda":
            torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--cells", default=None, help="K values (default: 4 on the CPU, "
                        "32 on a GPU)")  # fmt: skip
    parser.add_argument("--images", type=int, default=None, help="n, images per cell "
                        "(default: 16 on the CPU, 1,024 on a GPU)")  # fmt: skip
    parser.add_argument("--ways", default=",".join(WAYS), help="formulations to time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls (best kept)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: the calling thread's CPU time (CPU, one thread)")  # fmt: skip
    args = parser.parse_args()
    ways = args.ways.split(",")
    unknown = sorted(set(ways) - set(WAYS))
    if unknown or ways[0] != "grouped":
        parser.error(f"--ways: the first must be grouped, the others from {', '.join(WAYS)}; "
                     f"got {args.ways}")  # fmt: skip
    device = setup(args.device, args.threads)
    if args.clock == "cpu" and (device.type != "cpu" or torch.get_num_threads() != 1):
        parser.error("--clock cpu: only on the CPU with --threads 1")
    gpu = device.type == "cuda"
    cells = [int(k) for k in (args.cells or ("32" if gpu else "4")).split(",")]
    n = args.images or (1024 if gpu else 16)
    peak = describe(device, max(args.repeats, 3), args.clock)
    print(
        f"{'layer':22} {'K':>3} {'n':>6} {'way':>11} {'ms':>9} {'us/cell-img':>12} "
        f"{'%peak':>6} {'vs grouped':>10} {'err':>8}"
    )
    for layer in LAYERS:
        for k in cells:
            measure(layer, k, n, device, peak, args.repeats, args.clock, ways)


if __name__ == "__main__":
    main()
