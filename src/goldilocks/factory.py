"""Registered models at run time: import the factory, build, initialise, check ``k``
(docs/method.md section 3.5).

The declared numbers come from the config (:mod:`goldilocks.registered`); this module is
what the jobs run with torch:

- :func:`load_factory` imports ``"module:function"`` (one line naming it when it fails);
- :func:`draw_params` builds the module on the CPU with torch's global CPU generator
  seeded from the cell's seed, so the modules' own initialisers (``reset_parameters``, or
  whatever the factory does) draw the initial parameters. The global generator is shared
  by every thread of the process, so every use of it here holds :data:`GLOBAL_RNG_LOCK`
  inside :func:`torch.random.fork_rng` (the state is restored afterwards); the pipeline
  draws nothing else from it;
- :func:`model_for` builds the module a consumer runs functionally (on the meta device
  when the factory allows it) and attaches the buffers saved by the init stage;
- :func:`check_output_shape` runs one forward pass and refuses logits that are not
  ``(N, num_classes)`` (one more class would train silently as an extra softmax output);
- :func:`check_output_exponent` measures ``k`` as the slope of ``log ||f||`` against
  ``log alpha`` at large alpha and refuses a declaration that disagrees.

Every registered module runs in eval mode (dropout off, batch statistics from the saved
buffers) and with PyTorch's math attention (:func:`math_attention`): the fused
``scaled_dot_product_attention`` kernels and the Transformer fast path have no double
backward and no forward-mode derivative on the CPU.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
import threading
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from goldilocks.registered import RegisteredDescription
from goldilocks.scaling import EXEMPT_ATTRIBUTE, alpha_fixed, scale_params

#: Held by every use of torch's global CPU generator (building a registered model).
GLOBAL_RNG_LOCK = threading.Lock()
#: |measured - declared| output exponent allowed by :func:`check_output_exponent`.
EXPONENT_TOLERANCE = 0.05
#: log10 alpha of the measurement window (moved down where alpha^k would pass 10^250).
EXPONENT_WINDOW = (3.0, 5.0)
EXPONENT_POINTS = 5
MAX_LOG10_OUTPUT = 250.0


class ModelError(RuntimeError):
    """A registered model that cannot be used as declared (one line, user-facing)."""

    user_facing = True


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _signature(function) -> str:
    try:
        return f"{function.__name__}{inspect.signature(function)}"
    except (TypeError, ValueError, AttributeError):
        return repr(function)


def load_factory(spec: str) -> Callable[..., nn.Module]:
    """The function named by ``"module:function"``.

    Raises:
        ModelError: one line naming ``spec`` when the module does not import or has no
            such function.
    """
    module_name, _, name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise ModelError(
            f"models factory {spec!r}: module {module_name!r} does not import ({_one_line(err)})"
        ) from None
    function = getattr(module, name, None)
    if not callable(function):
        where = getattr(module, "__file__", module_name)
        raise ModelError(f"models factory {spec!r}: {where} has no function {name!r}")
    return function


@contextlib.contextmanager
def global_rng(seed: int | None = None) -> Iterator[None]:
    """Hold torch's global CPU generator for the block: lock it against other threads,
    save its state, seed it (when ``seed`` is given), restore the state afterwards."""
    with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.random.default_generator.manual_seed(seed)
        yield


def build(
    description: RegisteredDescription,
    in_shape: tuple[int, int, int],
    num_classes: int,
    device: str = "meta",
    seed: int | None = None,
) -> nn.Module:
    """The factory's module for ``description``'s variant, built on ``device`` while
    holding the global generator (seeded with ``seed``), in eval mode, with math
    attention installed (:func:`use_math_attention`)."""
    factory = load_factory(description.factory)
    try:  # the signature, before the call: a TypeError inside the factory keeps its frames
        inspect.signature(factory).bind(description.variant.name, tuple(in_shape), num_classes)
    except TypeError as err:
        raise ModelError(
            f"models factory {description.factory!r}: its signature {_signature(factory)} "
            f"cannot take (variant, in_shape, num_classes) ({err})"
        ) from None
    except ValueError:  # no signature to read (a builtin): call it and see
        pass
    with global_rng(seed), torch.device(device):
        model = factory(description.variant.name, tuple(in_shape), num_classes)
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"models factory {description.factory!r} returned {type(model).__name__} for "
            f"variant {description.variant.name!r}, not an nn.Module"
        )
    model.eval()
    use_math_attention(model)
    return model


def draw_params(
    description: RegisteredDescription,
    in_shape: tuple[int, int, int],
    num_classes: int,
    seed: int,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Initial parameters and buffers of a registered model, drawn by its own
    initialisers from torch's global generator seeded with ``seed``.

    The module is built on the CPU in torch's default dtype (float32 unless the factory
    says otherwise); parameters and floating buffers are returned in float64, other
    buffers as they are. The same ``seed`` gives the same tensors in every thread and
    process (:func:`global_rng`).
    """
    model = build(description, in_shape, num_classes, "cpu", seed)
    params = {n: p.detach().to(torch.float64).clone() for n, p in model.named_parameters()}
    buffers = {
        n: (b.detach().to(torch.float64) if b.is_floating_point() else b.detach()).clone()
        for n, b in model.named_buffers()
    }
    return params, buffers


def model_for(
    description: RegisteredDescription,
    in_shape: tuple[int, int, int],
    num_classes: int,
    buffers: dict[str, Tensor],
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> nn.Module:
    """The module a consumer runs functionally: built on the meta device (no data, no
    random draws; on the CPU if the factory cannot build there), with the init file's
    ``buffers`` attached on ``device`` (floating ones in ``dtype``).

    Raises:
        ModelError: when the module's buffers and the saved ones differ.
    """
    try:
        model = build(description, in_shape, num_classes, "meta")
    except ModelError:
        raise
    except Exception:  # e.g. a factory that reads a tensor's value while building
        model = build(description, in_shape, num_classes, "cpu")
    names = {n for n, _ in model.named_buffers()}
    if names != set(buffers):
        raise ModelError(
            f"model {description.architecture}, variant {description.variant.name}: its "
            f"buffers {sorted(names)} differ from the init file's {sorted(buffers)}; rebuild "
            "it with `snakemake --forcerun init`"
        )
    for name, value in buffers.items():
        prefix, _, leaf = name.rpartition(".")
        value = value.to(device=device, dtype=dtype if value.is_floating_point() else None)
        setattr(model.get_submodule(prefix), leaf, value)
    exempt = description.exempt(name for name, _ in model.named_parameters())
    setattr(model, EXEMPT_ATTRIBUTE, exempt)  # read by scaling.alpha_fixed
    return model


# Math attention. The SDPA backend switches and the Transformer fast-path switch are
# process-wide; a counter under a lock keeps them on "math only, no fast path" while any
# registered model is inside a forward pass in any thread, and restores them after the
# last one leaves.
_ATTENTION_LOCK = threading.Lock()
_attention_users = 0
_attention_saved: dict[str, bool] = {}
_SDP_SWITCHES = {
    "flash": (torch.backends.cuda.flash_sdp_enabled, torch.backends.cuda.enable_flash_sdp),
    "mem_efficient": (
        torch.backends.cuda.mem_efficient_sdp_enabled,
        torch.backends.cuda.enable_mem_efficient_sdp,
    ),
    "cudnn": (torch.backends.cuda.cudnn_sdp_enabled, torch.backends.cuda.enable_cudnn_sdp),
    "math": (torch.backends.cuda.math_sdp_enabled, torch.backends.cuda.enable_math_sdp),
}


def _attention_enter() -> None:
    global _attention_users
    with _ATTENTION_LOCK:
        if _attention_users == 0:
            _attention_saved.clear()
            for name, (get, set_) in _SDP_SWITCHES.items():
                _attention_saved[name] = get()
                set_(name == "math")
            _attention_saved["fastpath"] = torch.backends.mha.get_fastpath_enabled()
            torch.backends.mha.set_fastpath_enabled(False)
        _attention_users += 1


def _attention_exit() -> None:
    global _attention_users
    with _ATTENTION_LOCK:
        _attention_users -= 1
        if _attention_users == 0:
            for name, (_, set_) in _SDP_SWITCHES.items():
                set_(_attention_saved[name])
            torch.backends.mha.set_fastpath_enabled(_attention_saved["fastpath"])


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """Inside the block (in any thread), ``scaled_dot_product_attention`` runs its math
    backend and ``nn.TransformerEncoderLayer`` skips its fused fast path, so the forward
    pass records ordinary differentiable operations (double backward, forward mode)."""
    _attention_enter()
    try:
        yield
    finally:
        _attention_exit()


def use_math_attention(model: nn.Module) -> None:
    """Run every forward pass of ``model`` inside :func:`math_attention` (forward hooks;
    the exit hook runs even when the forward pass raises). The graph recorded there is
    made of ordinary operations, so backward passes need no switch."""
    model.register_forward_pre_hook(lambda module, args: _attention_enter())
    model.register_forward_hook(lambda module, args, out: _attention_exit(), always_call=True)


def exponent_window(declared: int | None) -> tuple[float, float]:
    """log10 of the smallest and largest alpha of the measurement: 10^3 .. 10^5, moved
    down where ``alpha^k`` would pass 10^250 (``k`` the declared exponent)."""
    low, high = EXPONENT_WINDOW
    if declared:
        high = min(high, MAX_LOG10_OUTPUT / declared)
    return high - (EXPONENT_WINDOW[1] - low), high


@torch.no_grad()
def output_slope(
    model: nn.Module,
    params: dict[str, Tensor],
    x: Tensor,
    window: tuple[float, float],
) -> float:
    """Least-squares slope of ``log ||f_{alpha theta}(x)||_F`` against ``log alpha`` at
    :data:`EXPONENT_POINTS` log-spaced alphas over ``10^window``, in float64 (NaN where a
    norm is zero or not finite); alpha scales what it scales in the cells
    (:func:`goldilocks.scaling.alpha_fixed` is left alone)."""
    from goldilocks.models import forward

    theta = {k: v.to(torch.float64) for k, v in params.items()}
    x = x.to(torch.float64)
    low, high = window
    exempt = alpha_fixed(model)
    logs_a, logs_f = [], []
    for i in range(EXPONENT_POINTS):
        log_a = low + (high - low) * i / (EXPONENT_POINTS - 1)
        norm = torch.linalg.norm(forward(model, scale_params(theta, 10.0**log_a, exempt), x))
        if not (math.isfinite(norm.item()) and norm.item() > 0):
            return math.nan
        logs_a.append(log_a * math.log(10.0))
        logs_f.append(math.log(norm.item()))
    mean_a, mean_f = sum(logs_a) / len(logs_a), sum(logs_f) / len(logs_f)
    cov = sum((a - mean_a) * (f - mean_f) for a, f in zip(logs_a, logs_f, strict=True))
    return cov / sum((a - mean_a) ** 2 for a in logs_a)


@torch.no_grad()
def check_output_shape(
    description: RegisteredDescription,
    model: nn.Module,
    params: dict[str, Tensor],
    x: Tensor,
    num_classes: int,
) -> None:
    """One forward pass of the unscaled ``params`` on the batch ``x`` (float64) gives
    logits of shape ``(N, num_classes)``.

    Raises:
        ModelError: one line naming the model, the variant and the batch's shape, with
            the forward pass's error or the shape it gave.
    """
    from goldilocks.models import forward

    arch, variant = description.architecture, description.variant.name
    where = f"model {arch}, variant {variant}: forward on a batch of shape {tuple(x.shape)}"
    theta = {k: v.to(torch.float64) for k, v in params.items()}
    try:
        out = forward(model, theta, x.to(torch.float64))
    except Exception as err:
        raise ModelError(
            f"{where} failed ({_one_line(err)}); the factory is called as "
            f"(variant, in_shape, num_classes) = ({variant!r}, {tuple(x.shape[1:])}, "
            f"{num_classes})"
        ) from None
    expected = (x.shape[0], num_classes)
    if not isinstance(out, Tensor):  # a tuple, a dict, a library's output object
        raise ModelError(
            f"{where} returns a {type(out).__name__}, expected a tensor of logits "
            f"{expected} (N, num_classes)"
        )
    if tuple(out.shape) != expected:
        raise ModelError(
            f"{where} gives logits of shape {tuple(out.shape)}, expected {expected} "
            "(N, num_classes)"
        )


def check_output_exponent(
    description: RegisteredDescription,
    model: nn.Module,
    params: dict[str, Tensor],
    x: Tensor,
) -> float:
    """The measured output exponent (:func:`output_slope`); a declared ``k`` further
    than :data:`EXPONENT_TOLERANCE` from it is refused.

    Raises:
        ModelError: one line naming the model, the variant, the declared and the
            measured exponent.
    """
    declared = description.output_exponent
    window = exponent_window(declared)
    measured = output_slope(model, params, x, window)
    if declared is not None and not abs(measured - declared) <= EXPONENT_TOLERANCE:
        arch, variant = description.architecture, description.variant.name
        raise ModelError(
            f"model {arch}, variant {variant}: declared output_exponent {declared}, measured "
            f"{measured:.2f} (slope of log||f|| against log alpha at alpha = "
            f"10^{window[0]:.3g}..10^{window[1]:.3g} in float64, tolerance "
            f"{EXPONENT_TOLERANCE}); fix models.{arch}.variants.{variant}.output_exponent "
            "(null if no single power holds)"
        )
    return measured
