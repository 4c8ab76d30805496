"""Curvature at initialisation: the projected Hessian and its Gauss-Newton split
(docs/method.md section 4).

Following Vysogorets, Dawid and Kempe (2024) and Fort and Scherlis (2019), the Hessian
``H`` of the mean tempered cross-entropy is measured on a random ``d``-dimensional
subspace, ``H_d = R^T H R``, with ``R`` a ``P x d`` sparse matrix with exactly orthonormal
columns (:func:`sparse_projection`). ``H R`` is computed as ``d`` Hessian-vector products
in the full parameter space; ``R`` is applied outside the derivative, never
differentiated through. The Gauss-Newton term

    G_d = (J R)^T (diag p - p p^T) (J R) / (N T^2)

comes from the ``d`` directional derivatives ``J R`` of the raw logits (which do not
depend on ``T``), and the rest is ``H_term = H_d - G_d``.

A measurement is a :class:`Problem` (model, point, batch, ``T``, ``R``).
:func:`projected_hessian` and :func:`projected_jacobian` hold the one dispatch over the
methods; :func:`measure` calls them with one shared forward pass (:class:`SharedPass`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from goldilocks.variants import check_choice

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


class SubspaceTooLarge(ValueError):
    """``curvature.subspace_dim`` larger than the model's parameter count (one line)."""

    user_facing = True


def sparse_projection(n_params: int, dim: int, generator: torch.Generator) -> Projection:
    """Random sparse ``R`` with exactly orthonormal columns (docs/method.md section 4).

    Column ``i`` has ``s = min(ceil(sqrt(P)), floor(P/d))`` non-zeros of random sign on a
    support disjoint from every other column's, each ``1/sqrt(s)``; disjoint supports make
    ``R^T R = I`` exactly, and ``R`` stays sparse.

    Raises:
        SubspaceTooLarge: if ``P < d`` (a ``ValueError``).
    """
    if n_params < dim:
        raise SubspaceTooLarge(
            f"config key curvature.subspace_dim: d = {dim} exceeds the model's parameter "
            f"count P = {n_params}"
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


@dataclass(frozen=True)
class Problem:
    """One curvature measurement: ``model`` at ``params`` on the batch ``(x, y)``, the
    softmax at temperature ``T``, projected on ``R``.

    Attributes:
        model: a module used functionally (:func:`goldilocks.models.forward`); it must
            not be shared between threads (``functional_call`` swaps its parameters).
        params: the point, already alpha-scaled, in the working dtype and device.
        x: inputs ``(N, C, H, W)``; y: labels ``(N,)``.
        temperature: ``T``.
        projection: ``R``.
    """

    model: torch.nn.Module
    params: dict[str, Tensor]
    x: Tensor
    y: Tensor
    temperature: float
    projection: Projection

    def logits(self, params: dict[str, Tensor]) -> Tensor:
        """Raw logits ``f(x)`` at ``params``, ``(N, K)``."""
        from goldilocks.models import forward

        return forward(self.model, params, self.x)

    def loss(self, params: dict[str, Tensor]) -> Tensor:
        """Mean tempered cross-entropy at ``params``."""
        from goldilocks.scaling import tempered_loss

        return tempered_loss(self.logits(params), self.y, self.temperature)

    def at(self, params: dict[str, Tensor]) -> Problem:
        """The same problem at other parameters (curvature along training)."""
        return replace(self, params=params)


class SharedPass:
    """One forward pass and gradient at ``problem.params`` and the dense rows of ``R``,
    built on first use and shared by H R, J R and the diagnostics of :func:`measure`.

    Args:
        problem: the measurement.
        create_graph: keep the gradient's graph (the ``loop`` HVPs differentiate it).
        record_linear: record every ``nn.Linear``'s input and output during the forward
            pass (the ``sparse`` J R needs them; see :func:`linear_inputs`).
        rows: ``R^T`` as dense rows, if already built.
    """

    def __init__(
        self,
        problem: Problem,
        create_graph: bool = False,
        record_linear: bool = False,
        rows: Tensor | None = None,
    ) -> None:
        self.problem, self.create_graph, self.record_linear = problem, create_graph, record_linear
        if rows is not None:
            self.rows = rows

    @functools.cached_property
    def rows(self) -> Tensor:
        """``R^T`` as a dense ``(d, P)`` tensor in the parameters' dtype and device."""
        any_p = next(iter(self.problem.params.values()))
        return self.problem.projection.dense(any_p.dtype, any_p.device)

    @functools.cached_property
    def leaves(self) -> dict[str, Tensor]:
        return _leaves(self.problem.params)

    @functools.cached_property
    def _forward(self) -> tuple[Tensor, dict | None]:
        if not self.record_linear:
            return self.problem.logits(self.leaves), None
        with linear_inputs(self.problem.model) as linear:
            return self.problem.logits(self.leaves), linear

    @property
    def logits(self) -> Tensor:
        """Raw logits ``(N, K)`` with their graph."""
        return self._forward[0]

    @property
    def linear(self) -> dict | None:
        """The recorded linear layers (``None`` without ``record_linear``)."""
        return self._forward[1]

    @functools.cached_property
    def loss(self) -> Tensor:
        from goldilocks.scaling import tempered_loss

        return tempered_loss(self.logits, self.problem.y, self.problem.temperature)

    @functools.cached_property
    def grads(self) -> tuple[Tensor, ...]:
        """The loss gradient per parameter (with its graph when ``create_graph``)."""
        return torch.autograd.grad(
            self.loss,
            list(self.leaves.values()),
            create_graph=self.create_graph,
            retain_graph=True,
        )


#: Methods for ``H R`` (``curvature.hvp_method``).
HVP_METHODS = ("loop", "vmap")
#: Methods for ``J R`` (``curvature.jvp_method``).
JVP_METHODS = ("loop", "sparse", "vmap")


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
    problem: Problem,
    method: str = "loop",
    chunk_size: int | None = None,
    rows: Tensor | None = None,
    shared: SharedPass | None = None,
) -> Tensor:
    """``R^T H R`` as a ``(d, d)`` matrix, from ``d`` Hessian-vector products.

    Args:
        problem: model, parameters (the point), batch, ``T`` and ``R``.
        method: ``"loop"`` (double-backward HVPs one column at a time, reverse mode only,
            fastest on the CPU) or ``"vmap"`` (``vmap(jvp(grad))`` over the columns,
            batched; suited to GPUs). Both give the same matrix to round-off.
        chunk_size: columns per ``vmap`` batch (``None``: all at once).
        rows: ``R^T`` as dense rows in the parameters' dtype and device, if already built.
        shared: the forward pass and gradient :func:`measure` shares between H R, J R
            and the diagnostics (``None``: this call makes its own).
    """
    check_choice("curvature.hvp_method", method, HVP_METHODS)
    shared = shared or SharedPass(problem, create_graph=method == "loop", rows=rows)
    if method == "loop":
        h = _hvp_loop(_flat(shared.grads), shared.leaves, shared.rows, problem.projection)
    else:
        h = _hvp_vmap(problem.loss, problem.params, shared.rows, problem.projection, chunk_size)
    return 0.5 * (h + h.T)


def projected_jacobian(
    problem: Problem,
    method: str = "loop",
    chunk_size: int | None = None,
    rows: Tensor | None = None,
    shared: SharedPass | None = None,
) -> Tensor:
    """``J R``: the raw logits' directional derivatives, ``(d, N, K)``.

    Args:
        problem: model, parameters (the point), batch and ``R`` (``T`` is not used:
            ``J R`` does not depend on it).
        method: ``"loop"``: reverse mode only, by the double-vjp trick
            ``J v = d/du <J^T u, v>`` (one backward pass per column through the graph of
            ``J^T u``, which is linear in ``u``); safe next to other autograd work in other
            threads. ``"sparse"``: the same in one batched pass, with the linear layers'
            part of ``R`` applied to their inputs sparsely (:func:`_jr_sparse`;
            thread-safe; fastest for MLPs on the CPU). ``"vmap"``: ``d`` forward-mode
            JVPs batched with ``vmap`` (fastest for convnets, but forward-mode AD state is
            process-global in torch, so concurrent calls queue on :data:`FORWARD_AD_LOCK`).
        chunk_size: columns per ``vmap`` batch (``None``: all at once).
        rows: as in :func:`projected_hessian`.
        shared: as in :func:`projected_hessian`.
    """
    check_choice("curvature.jvp_method", method, JVP_METHODS)
    shared = shared or SharedPass(problem, record_linear=method == "sparse", rows=rows)
    if method == "sparse":
        if shared.linear is None:
            raise ValueError("projected_jacobian: method 'sparse' needs a pass with record_linear")
        return _jr_sparse(shared.logits, shared.leaves, problem.projection, shared.linear)
    if method == "vmap":
        return _jr_vmap(problem.logits, problem.params, shared.rows, chunk_size)
    return _jr_reverse(shared.logits, shared.leaves, shared.rows)


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
    g = torch.einsum("ink,nk,jnk->ij", centered, p, centered) / (n * temperature * temperature)
    return 0.5 * (g + g.T)


def matrix_metrics(matrix: Tensor) -> dict[str, float]:
    """docs/method.md section 4 metrics of a symmetric matrix.

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


def resolve_methods(
    hvp_method: str, jvp_method: str, device: torch.device, params: dict[str, Tensor]
) -> tuple[str, str]:
    """The H R and J R methods that ``auto`` stands for on ``device`` and this model.

    ``hvp_method`` auto: ``vmap`` on a GPU, ``loop`` on the CPU (thread-safe reverse
    mode). ``jvp_method`` auto: ``vmap`` (forward mode) on a GPU and for models with a
    parameter of more than two dimensions (convolutions; also the example ViT's position
    embedding), ``sparse`` for MLPs on the CPU: the fastest per model type, measured
    (docs/performance.md, "The curvature engine: cost").
    """
    if hvp_method == "auto":
        hvp_method = "vmap" if device.type == "cuda" else "loop"
    if jvp_method == "auto":
        beyond_matrices = any(p.dim() > 2 for p in params.values())
        jvp_method = "vmap" if device.type == "cuda" or beyond_matrices else "sparse"
    return hvp_method, jvp_method


def measure(
    problem: Problem,
    hvp_method: str = "loop",
    jvp_method: str = "loop",
    chunk_size: int | None = None,
) -> tuple[dict[str, float | bool], dict[str, float]]:
    """Every curvature metric of one cell at ``problem.params`` (already alpha-scaled).

    One forward pass and one gradient (:class:`SharedPass`) serve the diagnostics and the
    same :func:`projected_jacobian` (``jvp_method``) and :func:`projected_hessian`
    (``hvp_method``) that the dense-Hessian tests check; ``R``'s rows are built once.

    Returns:
        ``(row, layer_ratios)``: ``row`` holds ``loss``, ``accuracy``, ``logit_norm``
        (``||Z0||_F / sqrt(N)`` of the logits the softmax sees, ``f / T``, as in
        Temperature Check, Agarwala et al.), ``grad_norm``, ``nonfinite``,
        ``hterm_resolved`` (see :func:`hterm_resolved`; the ``hterm_*`` metrics are NaN
        when False) and ``<m>_<metric>`` for ``m`` in :data:`MATRICES`; ``layer_ratios``
        maps each parameter tensor to the weight-to-gradient ratio ``E[dW^2] / E[W^2]``
        (Defazio and Bottou).
    """
    check_choice("curvature.hvp_method", hvp_method, HVP_METHODS)
    check_choice("curvature.jvp_method", jvp_method, JVP_METHODS)
    shared = SharedPass(
        problem, create_graph=hvp_method == "loop", record_linear=jvp_method == "sparse"
    )
    shared.rows  # noqa: B018 (built first: the memory layout every method then sees)
    loss, temperature, y = shared.loss, problem.temperature, problem.y
    grads = {k: g.detach() for k, g in zip(shared.leaves, shared.grads, strict=True)}
    jr = projected_jacobian(problem, jvp_method, chunk_size, shared=shared)
    hessian = projected_hessian(problem, hvp_method, chunk_size, shared=shared)
    logits = shared.logits.detach()
    del shared
    row: dict[str, float | bool] = {
        "loss": loss.item(),
        "accuracy": (logits.argmax(-1) == y).double().mean().item(),
        "logit_norm": (torch.linalg.norm(logits / temperature) / math.sqrt(len(y))).item(),
        "grad_norm": torch.linalg.norm(_flat(grads.values())).item(),
    }
    params = problem.params
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


def probe(
    problem: Problem, hvp_method: str, jvp_method: str
) -> Callable[[dict[str, Tensor]], dict[str, float]]:
    """Curvature along training: ``params -> {hessian_*, gterm_*, hterm_*}``, the matrix
    metrics of :func:`measure` for ``problem`` (batch, ``T``, ``R``) at other parameters."""

    def at(params: dict[str, Tensor]) -> dict[str, float]:
        row, _ = measure(problem.at(params), hvp_method, jvp_method)
        return {k: v for k, v in row.items() if k.split("_", 1)[0] in MATRICES}

    return at
