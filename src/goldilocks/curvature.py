"""Curvature at initialisation: the projected Hessian and its Gauss-Newton split.

Following Vysogorets et al. (``001_*``) and Fort & Scherlis (``002_*``), the Hessian ``H``
of the mean tempered cross-entropy is measured on a random ``d``-dimensional subspace,
``H_d = R^T H R``, with ``R`` a ``P x d`` sparse matrix with exactly orthonormal columns
(:func:`sparse_projection`). ``H R`` is computed as ``d`` Hessian-vector products in the
full parameter space; ``R`` is applied outside the derivative, never differentiated
through. The Gauss-Newton term

    G_d = (J R)^T (diag p - p p^T) (J R) / (N T^2)

comes from ``d`` forward-mode JVPs of the raw logits (``J R`` does not depend on ``T``),
and the rest is ``H_term = H_d - G_d``.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

#: Forward-mode AD levels are process-global in torch: two threads inside
#: ``torch.func.jvp`` at once fail ("forward AD level with an invalid index"; seen when two
#: curvature cells ran as threads of one Snakemake process). The ``vmap`` method holds
#: this lock around its forward-mode sections; the ``loop`` method (the CPU default) uses
#: reverse mode only and runs fully concurrently. Either way a module must not be shared
#: between threads (``functional_call`` swaps its parameters): each job builds its own.
FORWARD_AD_LOCK = threading.Lock()

METRICS = ("trace_ratio", "frac_pos", "eig_max", "eig_min", "spectral_norm")
MATRICES = ("hessian", "gterm", "hterm")
POSITIVE_TOL = 1e-12
#: The H-term ``H - G`` is resolved when ``||H - G||_F`` is at least this many machine
#: epsilons of the working dtype times ``max(||H||_F, ||G||_F)``; below, H and G agree to
#: nearly every digit the dtype holds and the difference is rounding (float32, ResNet-4
#: ``combined`` under joint scaling at alpha = 1e-12: ||H - G|| / ||H|| = 4e-10, so
#: float32 gave Tr/||.||_F = 1.33 for an H-term whose float64 value is -0.11).
HTERM_RESOLUTION = 1e3


@dataclass(frozen=True)
class Projection:
    """A sparse ``P x d`` matrix with orthonormal columns on disjoint supports.

    Attributes:
        index: ``(d, s)`` int64, the rows that column ``i`` touches.
        value: ``(d, s)`` float64, ``+-1/sqrt(s)``.
        n_params: ``P``.
    """

    index: Tensor
    value: Tensor
    n_params: int

    @property
    def dim(self) -> int:
        return self.index.shape[0]

    def dense(
        self, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
    ) -> Tensor:
        """``R^T`` as a dense ``(d, P)`` tensor (one row per column of ``R``)."""
        rows = torch.zeros(self.dim, self.n_params, dtype=dtype, device=device)
        rows.scatter_(1, self.index.to(device), self.value.to(device=device, dtype=dtype))
        return rows

    def apply_transpose(self, vectors: Tensor) -> Tensor:
        """``R^T v`` for a batch of flat vectors ``(..., P) -> (..., d)``."""
        idx = self.index.to(vectors.device)
        val = self.value.to(device=vectors.device, dtype=vectors.dtype)
        return (vectors[..., idx] * val).sum(-1)


def sparse_projection(n_params: int, dim: int, generator: torch.Generator) -> Projection:
    """Random sparse ``R`` with exactly orthonormal columns (SPEC section 4).

    Column ``i`` has ``s = min(ceil(sqrt(P)), floor(P/d))`` non-zeros of random sign on a
    support disjoint from every other column's, each ``1/sqrt(s)``; disjoint supports make
    ``R^T R = I`` exactly, and ``R`` stays sparse.

    Raises:
        ValueError: if ``P < d``.
    """
    if n_params < dim:
        raise ValueError(
            f"curvature.subspace_dim: d = {dim} exceeds the parameter count P = {n_params}"
        )
    s = min(math.isqrt(n_params - 1) + 1, n_params // dim)
    index = torch.randperm(n_params, generator=generator)[: dim * s].view(dim, s)
    signs = torch.randint(0, 2, (dim, s), generator=generator, dtype=torch.float64) * 2 - 1
    return Projection(index, signs / math.sqrt(s), n_params)


def _flat(tensors) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflat(vector: Tensor, params: dict[str, Tensor]) -> dict[str, Tensor]:
    out, start = {}, 0
    for name, p in params.items():
        out[name] = vector[..., start : start + p.numel()].reshape(*vector.shape[:-1], *p.shape)
        start += p.numel()
    return out


LossFn = Callable[[dict[str, Tensor]], Tensor]
LogitFn = Callable[[dict[str, Tensor]], Tensor]

#: Methods for ``H R`` (``curvature.hvp_method``).
HVP_METHODS = ("loop", "vmap")
#: Methods for ``J R`` (``curvature.jvp_method``).
JVP_METHODS = ("loop", "sparse", "vmap")


def _check(method: str, allowed: tuple[str, ...], key: str) -> None:
    if method not in allowed:
        raise ValueError(
            f"curvature.{key}: unknown value {method!r}; choose one of {', '.join(allowed)}"
        )


def _leaves(params: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().requires_grad_(True) for k, v in params.items()}


def _hvp_loop(gflat: Tensor, leaves: dict[str, Tensor], rows: Tensor, projection) -> Tensor:
    """``R^T H R`` from a gradient built with ``create_graph``: one double backward per row."""
    cols = []
    for row in rows:
        hv = torch.autograd.grad(gflat, list(leaves.values()), grad_outputs=row, retain_graph=True)
        cols.append(projection.apply_transpose(_flat(hv)))
    return torch.stack(cols, dim=1)


def _hvp_vmap(loss_fn: LossFn, params, rows: Tensor, projection, chunk_size) -> Tensor:
    detached = {k: v.detach() for k, v in params.items()}

    def hvp(tangent: dict[str, Tensor]) -> Tensor:
        _, out = torch.func.jvp(torch.func.grad(loss_fn), (detached,), (tangent,))
        return projection.apply_transpose(_flat(out.values()))

    with FORWARD_AD_LOCK:
        return torch.func.vmap(hvp, chunk_size=chunk_size)(_unflat(rows, detached)).T


def _jr_reverse(logits: Tensor, leaves: dict[str, Tensor], rows: Tensor) -> Tensor:
    """``J R`` in reverse mode by the double-vjp trick ``J v = d/du <J^T u, v>``: one
    backward pass per row through the graph of ``J^T u`` (linear in ``u``)."""
    dual = torch.zeros_like(logits, requires_grad=True)
    jtu = torch.autograd.grad(logits, list(leaves.values()), dual, create_graph=True)
    jtu = _flat(jtu)
    return torch.stack([torch.autograd.grad(jtu, dual, r, retain_graph=True)[0] for r in rows])


@contextlib.contextmanager
def linear_inputs(model: torch.nn.Module) -> Iterator[dict[str, tuple[Tensor, Tensor] | None]]:
    """Record the input and output of every ``nn.Linear`` of ``model`` while in the block.

    Yields a dict filled by the forward passes run inside: ``"<module>.weight" -> (h, a)``
    with ``a = h W^T + b``, or ``None`` for a layer that ran more than once (its weight
    then takes the general path of ``sparse``). For the ``sparse`` J R method.
    """
    seen: dict[str, tuple[Tensor, Tensor] | None] = {}

    def hook_for(name: str):
        def hook(module, inputs, output):
            seen[name] = None if name in seen else (inputs[0], output)

        return hook

    handles = [
        m.register_forward_hook(hook_for(f"{n}.weight" if n else "weight"))
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear)
    ]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def _jr_sparse(
    logits: Tensor,
    leaves: dict[str, Tensor],
    projection: Projection,
    linear: dict[str, tuple[Tensor, Tensor] | None],
) -> Tensor:
    """``J R`` in reverse mode, all columns in one batched pass, ``R`` kept sparse.

    ``J R_i = d/du <J^T u, R_i>``. For the weight ``W`` of a linear layer ``a = h W^T + b``
    the part ``<dL/dW, V_i> = <delta, h V_i^T>`` with ``delta = d<f, u>/da``; ``h V_i^T``
    is built from the ``~sqrt(P)`` non-zeros of ``V_i`` alone, so the dense products with
    ``R``'s rows that dominate the plain reverse and forward forms (``N x in x out`` per
    column, most of the cost in an MLP's first layer) are never formed. Other tensors
    (biases, convolutions) take the general form with their block of ``R``, densely.
    """
    d, s = projection.index.shape
    dev, dt = logits.device, logits.dtype
    linear = {k: v for k, v in linear.items() if v is not None and v[0].dim() == 2}
    others = [n for n in leaves if n not in linear]
    dual = torch.zeros_like(logits, requires_grad=True)
    targets = [linear[n][1] for n in linear] + [leaves[n] for n in others]
    deltas = torch.autograd.grad(logits, targets, dual, create_graph=True, allow_unused=True)
    deltas = dict(zip([*linear, *others], deltas, strict=True))
    flat_index = projection.index.reshape(-1).to(dev)
    values = projection.value.reshape(-1).to(device=dev, dtype=dt)
    column = torch.arange(d, device=dev).repeat_interleave(s)
    outputs, grad_outputs = [], []
    start = 0
    for name, leaf in leaves.items():
        inside = (flat_index >= start) & (flat_index < start + leaf.numel())
        local, col, val = flat_index[inside] - start, column[inside], values[inside]
        start += leaf.numel()
        if deltas[name] is None:  # a parameter the logits do not depend on
            continue
        if name in linear:
            h, a = linear[name]
            ht = h.detach().T.contiguous()  # (in, N)
            n_out = a.shape[1]
            u = torch.zeros(d * n_out, ht.shape[1], dtype=dt, device=dev)
            # row (i, o) of u is (h V_i^T)[:, o]: a sum over the non-zeros V_i[o, j].
            u.index_add_(
                0, col * n_out + local // ht.shape[0], ht[local % ht.shape[0]] * val[:, None]
            )
            grad_outputs.append(u.view(d, n_out, -1).transpose(1, 2))  # (d, N, out)
        else:
            block = torch.zeros(d, leaf.numel(), dtype=dt, device=dev)
            block[col, local] = val
            grad_outputs.append(block.view(d, *leaf.shape))
        outputs.append(deltas[name])
    return torch.autograd.grad(outputs, dual, grad_outputs, is_grads_batched=True)[0]


def _jr_vmap(logit_fn: LogitFn, params, rows: Tensor, chunk_size) -> Tensor:
    detached = {k: v.detach() for k, v in params.items()}

    def jvp(tangent: dict[str, Tensor]) -> Tensor:
        return torch.func.jvp(logit_fn, (detached,), (tangent,))[1]

    with FORWARD_AD_LOCK:
        return torch.func.vmap(jvp, chunk_size=chunk_size)(_unflat(rows, detached))


def projected_hessian(
    loss_fn: LossFn,
    params: dict[str, Tensor],
    projection: Projection,
    method: str = "loop",
    chunk_size: int | None = None,
    rows: Tensor | None = None,
) -> Tensor:
    """``R^T H R`` as a ``(d, d)`` matrix, from ``d`` Hessian-vector products.

    Args:
        loss_fn: scalar loss as a function of the parameter dict.
        params: point at which the Hessian is taken.
        projection: ``R``.
        method: ``"loop"`` (double-backward HVPs one column at a time, reverse mode only,
            fastest on the CPU) or ``"vmap"`` (``vmap(jvp(grad))`` over the columns,
            batched; suited to GPUs). Both give the same matrix to round-off.
        chunk_size: columns per ``vmap`` batch (``None``: all at once).
        rows: ``projection.dense(...)`` in the parameters' dtype and device, if already
            built (:func:`measure` builds it once for H and J R).
    """
    _check(method, HVP_METHODS, "hvp_method")
    if rows is None:
        any_p = next(iter(params.values()))
        rows = projection.dense(any_p.dtype, any_p.device)  # (d, P)
    if method == "loop":
        leaves = _leaves(params)
        grads = torch.autograd.grad(loss_fn(leaves), list(leaves.values()), create_graph=True)
        h = _hvp_loop(_flat(grads), leaves, rows, projection)
    else:
        h = _hvp_vmap(loss_fn, params, rows, projection, chunk_size)
    return 0.5 * (h + h.T)


def projected_jacobian(
    logit_fn: LogitFn,
    params: dict[str, Tensor],
    projection: Projection,
    method: str = "loop",
    chunk_size: int | None = None,
    rows: Tensor | None = None,
    model: torch.nn.Module | None = None,
) -> Tensor:
    """``J R``: the raw logits' directional derivatives, ``(d, N, K)``.

    Args:
        logit_fn: raw logits ``(N, K)`` as a function of the parameter dict.
        params: point of evaluation.
        projection: ``R``.
        method: ``"loop"``: reverse mode only, by the double-vjp trick
            ``J v = d/du <J^T u, v>`` (one backward pass per column through the graph of
            ``J^T u``, which is linear in ``u``); safe next to other autograd work in other
            threads. ``"sparse"``: the same in one batched pass, with the linear layers'
            part of ``R`` applied to their inputs sparsely (:func:`_jr_sparse`; needs
            ``model``; thread-safe; fastest for MLPs on the CPU). ``"vmap"``: ``d``
            forward-mode JVPs batched with ``vmap`` (fastest for convnets, but
            forward-mode AD state is process-global in torch, so concurrent calls queue on
            :data:`FORWARD_AD_LOCK`).
        chunk_size: columns per ``vmap`` batch (``None``: all at once).
        rows: ``projection.dense(...)``, if already built (see :func:`projected_hessian`).
        model: the module ``logit_fn`` runs (``"sparse"`` records its linear layers).
    """
    _check(method, JVP_METHODS, "jvp_method")
    leaves = _leaves(params)
    if method == "sparse":
        if model is None:
            raise ValueError("projected_jacobian: method 'sparse' needs the model")
        with linear_inputs(model) as linear:
            logits = logit_fn(leaves)
        return _jr_sparse(logits, leaves, projection, linear)
    if rows is None:
        any_p = next(iter(params.values()))
        rows = projection.dense(any_p.dtype, any_p.device)
    if method == "vmap":
        return _jr_vmap(logit_fn, params, rows, chunk_size)
    return _jr_reverse(logit_fn(leaves), leaves, rows)


def gauss_newton(jr: Tensor, logits: Tensor, temperature: float) -> Tensor:
    """``G_d = (JR)^T (diag p - p p^T) (JR) / (N T^2)`` with ``p = softmax(z / T)``.

    Args:
        jr: ``(d, N, K)`` projected Jacobian of the raw logits.
        logits: ``(N, K)`` raw logits ``z``.
        temperature: ``T``.
    """
    n = logits.shape[0]
    p = torch.softmax(logits.detach() / temperature, dim=-1)  # (N, K)
    # J^T (diag p - p p^T) J = sum_k p_k (J_k - Jbar)(J_k - Jbar)^T with Jbar = sum_k p_k J_k:
    # a p-weighted covariance, positive semi-definite by construction and free of the
    # cancellation that the two-term form suffers when the softmax saturates.
    centered = jr - torch.einsum("ink,nk->in", jr, p).unsqueeze(-1)  # (d, N, K)
    g = torch.einsum("ink,nk,jnk->ij", centered, p, centered) / (n * temperature**2)
    return 0.5 * (g + g.T)


def matrix_metrics(matrix: Tensor) -> dict[str, float]:
    """SPEC section 4 metrics of a symmetric matrix.

    ``trace_ratio`` ``Tr/||.||_F``, ``frac_pos`` (eigenvalues above ``1e-12`` times the
    largest ``|eigenvalue|``), ``eig_max``, ``eig_min``, ``spectral_norm``. The matrix is
    cast to float64 and divided by its largest ``|entry|`` first, so entries too small to
    square in float32 still give the right ratios; eigenvalues are scaled back. Non-finite
    input gives NaN everywhere; an all-zero matrix gives NaN ratios and zero eigenvalues.
    """
    m = matrix.detach().to(torch.float64)
    nan = dict.fromkeys(METRICS, math.nan)
    if not torch.isfinite(m).all():
        return nan
    peak = m.abs().max().item()
    if peak == 0.0:
        return {**nan, "eig_max": 0.0, "eig_min": 0.0, "spectral_norm": 0.0}
    eig = torch.linalg.eigvalsh(m / peak)
    top = eig.abs().max().item()
    return {
        "trace_ratio": (eig.sum() / eig.square().sum().sqrt()).item(),
        "frac_pos": (eig > POSITIVE_TOL * top).double().mean().item(),
        "eig_max": eig.max().item() * peak,
        "eig_min": eig.min().item() * peak,
        "spectral_norm": top * peak,
    }


def hterm_resolved(hessian: Tensor, gterm: Tensor, hterm: Tensor) -> bool:
    """Whether ``hterm = hessian - gterm`` rises above the rounding of its working dtype.

    ``||hterm||_F >= HTERM_RESOLUTION * eps * max(||hessian||_F, ||gterm||_F)`` (norms
    taken in float64). :func:`measure` reports the H-term metrics of an unresolved cell
    as NaN with ``hterm_resolved = False`` instead of a number made of rounding.
    """
    eps = torch.finfo(hterm.dtype).eps
    norms = [torch.linalg.norm(m.detach().double()).item() for m in (hessian, gterm, hterm)]
    return norms[2] >= HTERM_RESOLUTION * eps * max(norms[0], norms[1])


def measure(
    model: torch.nn.Module,
    params: dict[str, Tensor],
    x: Tensor,
    y: Tensor,
    temperature: float,
    projection: Projection,
    method: str = "loop",
    chunk_size: int | None = None,
    jvp_method: str = "loop",
) -> tuple[dict[str, float | bool], dict[str, float]]:
    """Every curvature metric of one cell at ``params`` (already alpha-scaled).

    One forward pass and one gradient serve the diagnostics, the ``loop`` HVPs and the
    reverse-mode ``J R``; the dense rows of ``R`` are built once.

    Args:
        method: ``H R`` method (:func:`projected_hessian`).
        jvp_method: ``J R`` method (:func:`projected_jacobian`).

    Returns:
        ``(row, layer_ratios)``: ``row`` holds ``loss``, ``accuracy``, ``logit_norm``
        (``||Z0||_F / sqrt(N)`` of the logits the softmax sees, ``f / T``, as in
        ``004_*``), ``grad_norm``, ``nonfinite``, ``hterm_resolved`` (see
        :func:`hterm_resolved`; the ``hterm_*`` metrics are NaN when False) and
        ``<m>_<metric>`` for ``m`` in :data:`MATRICES`; ``layer_ratios`` maps each
        parameter tensor to the weight-to-gradient ratio ``E[dW^2] / E[W^2]`` of ``003_*``.
    """
    from goldilocks.models import forward
    from goldilocks.scaling import tempered_loss

    _check(method, HVP_METHODS, "hvp_method")
    _check(jvp_method, JVP_METHODS, "jvp_method")

    def logit_fn(p: dict[str, Tensor]) -> Tensor:
        return forward(model, p, x)

    def loss_fn(p: dict[str, Tensor]) -> Tensor:
        return tempered_loss(logit_fn(p), y, temperature)

    any_p = next(iter(params.values()))
    rows = projection.dense(any_p.dtype, any_p.device)  # (d, P), shared by H and J R
    leaves = _leaves(params)
    with linear_inputs(model) if jvp_method == "sparse" else contextlib.nullcontext({}) as linear:
        logits = logit_fn(leaves)  # (N, K), with its graph
    loss = tempered_loss(logits, y, temperature)
    create_graph = method == "loop"  # the HVP loop differentiates this gradient again
    grad_list = torch.autograd.grad(
        loss, list(leaves.values()), create_graph=create_graph, retain_graph=True
    )
    grads = {k: g.detach() for k, g in zip(leaves, grad_list, strict=True)}
    if jvp_method == "vmap":
        jr = _jr_vmap(logit_fn, params, rows, chunk_size)
    elif jvp_method == "sparse":
        jr = _jr_sparse(logits, leaves, projection, linear)
    else:
        jr = _jr_reverse(logits, leaves, rows)
    if method == "loop":
        hessian = _hvp_loop(_flat(grad_list), leaves, rows, projection)
    else:
        hessian = _hvp_vmap(loss_fn, params, rows, projection, chunk_size)
    del grad_list, rows
    hessian = 0.5 * (hessian + hessian.T)
    logits = logits.detach()
    row: dict[str, float | bool] = {
        "loss": loss.item(),
        "accuracy": (logits.argmax(-1) == y).double().mean().item(),
        "logit_norm": (torch.linalg.norm(logits / temperature) / math.sqrt(len(y))).item(),
        "grad_norm": torch.linalg.norm(_flat(grads.values())).item(),
    }
    ratios = {
        name: (grads[name].double().square().mean() / params[name].double().square().mean()).item()
        for name in params
    }
    gterm = gauss_newton(jr, logits, temperature)
    matrices = {"hessian": hessian, "gterm": gterm, "hterm": hessian - gterm}
    finite = all(torch.isfinite(m).all() for m in matrices.values())
    finite = finite and math.isfinite(row["loss"]) and math.isfinite(row["grad_norm"])
    row["nonfinite"] = not finite
    row["hterm_resolved"] = finite and hterm_resolved(hessian, gterm, matrices["hterm"])
    for name, matrix in matrices.items():
        ok = finite and (name != "hterm" or row["hterm_resolved"])
        for metric, value in matrix_metrics(matrix).items():
            row[f"{name}_{metric}"] = value if ok else math.nan
    return row, ratios
