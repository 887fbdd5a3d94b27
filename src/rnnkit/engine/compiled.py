"""The compiled path: C++ forward and backward of one layer-direction (``csrc/rnn.cpp``), built on first use.

Shape symbols: T time, B batch, I input, H hidden, G gates·H (rnn H, gru 3H, lstm 4H).

For ``rnn_tanh``, ``rnn_relu``, ``lstm``, ``gru`` (reset after, torch.nn) and ``gru_before`` (the lecture's), on
CPU tensors of float32 or float64. One C++ call runs a layer-direction: the input projection as one matrix product
over all ``T·B`` rows, then the recurrence: per step one GEMM into a preallocated buffer (BLAS called directly, no
dispatcher per step) and the gate math as one loop over ``B·H`` that the compiler vectorises. With grad the call
is one C++ autograd node (``layer_train``: no Python between autograd and the kernels); its backward stores what
the forward kept, allocates nothing per step, and forms every weight gradient as one GEMM over all steps after
the loop.

float32 uses a polynomial ``exp`` (≈1 ulp) for sigmoid and tanh, so it agrees with torch.nn to about 1e-5 (the
bounds are tested); float64 uses libm and agrees to rounding.

**Fallback.** :func:`rnn_extension` returns None (with one line on stderr, from :mod:`rnnkit.engine.build`) when
``RNNKIT_COMPILED=0``, no compiler/ninja is found or the build fails; :func:`run_compiled` then runs
:func:`rnnkit.engine.run_own` — the same numbers to rounding, never a traceback. CUDA tensors and other dtypes
never reach the C++ kernels: they take the own path too.

**Higher-order gradients.** The C++ backward is not itself differentiable. When autograd runs the backward with
``create_graph=True`` (grad mode on inside ``backward``), the C++ node calls back into Python
(:func:`_double_backward`, registered when the extension loads), which recomputes the forward with the autograd
reference :func:`reference_recurrence` and differentiates that instead, so double backward works (tested with
gradgradcheck); plain ``backward()`` always takes the C++ kernel.
"""

from __future__ import annotations

import weakref
from types import ModuleType

import torch
from torch import Tensor

from rnnkit.engine import build
from rnnkit.engine.own import project_inputs, run_own

__all__ = [
    "COMPILED_KINDS",
    "compiled_available",
    "reference_recurrence",
    "rnn_extension",
    "run_compiled",
    "run_compiled_zero",
    "step_compiled",
]

_CODES = {"rnn_tanh": 0, "rnn_relu": 1, "lstm": 2, "gru": 3, "gru_before": 4}
COMPILED_KINDS = frozenset(_CODES)
"""Cell kinds the C++ kernels run (every built-in kind of :data:`rnnkit.cells.CELLS`)."""

_DTYPES = (torch.float32, torch.float64)


def rnn_extension() -> ModuleType | None:
    """The compiled recurrence kernels (built on first use, then cached), or None where they cannot be had."""
    ext = build._LOADED.get("rnn")  # one dict look-up per call once loaded (it is called on every layer call)
    if ext is None:
        # -fno-trapping-math lets the compiler vectorise the float exp (floor and the float→int conversion)
        flags = ["-fno-trapping-math", "-mprefer-vector-width=512"]
        ext = build.load_threaded_extension("rnn", ["rnn.cpp"], extra_cflags=flags)
    if ext is not None and not getattr(ext, "_rnnkit_ready", False):
        ext.set_double_backward(_double_backward)  # what layer_train's backward runs under create_graph=True
        ext._rnnkit_ready = True
    return ext


def compiled_available() -> bool:
    """Whether the compiled kernels load here (builds them on first call)."""
    return rnn_extension() is not None


def runs_compiled(kind: str, x: Tensor) -> bool:
    """Whether ``kind`` on ``x`` reaches the C++ kernel (CPU, float32/float64, a compiled kind, extension loaded)."""
    return kind in _CODES and x.device.type == "cpu" and x.dtype in _DTYPES and rnn_extension() is not None


def run_compiled(
    kind: str,
    x: Tensor,
    state0: Tensor | tuple[Tensor, Tensor],
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
    """One direction of one layer through the compiled kernel (else :func:`rnnkit.engine.run_own`).

    Args and returns as :func:`rnnkit.engine.run_own`: ``x`` ``(T, B, I)``, ``state0`` ``h0`` ``(B, H)`` or
    ``(h0, c0)``, torch.nn's packed weights, ``mask`` ``(T, B, 1)`` or None; returns ``(hs (T, B, H), final)``.
    The input projection and the recurrence are one C++ call (one autograd node), forward and backward.
    """
    if not runs_compiled(kind, x) or w_hh.dtype != x.dtype:
        return run_own(kind, x, state0, w_ih, w_hh, b_ih, b_hh, mask)
    if kind == "lstm":
        h0, c0 = state0
    else:
        h0, c0 = state0, None
    m = None if mask is None else mask.reshape(mask.shape[0], mask.shape[1])  # (T, B)
    if not torch.is_grad_enabled() or not any(
        t is not None and t.requires_grad for t in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    ):  # inference: straight to the kernel (no autograd node; it keeps one step of its buffers)
        out = rnn_extension().layer_forward(
            _CODES[kind],
            x.contiguous(),
            h0.contiguous(),
            _c(c0, x),
            w_ih.contiguous(),
            w_hh.contiguous(),
            _step_layout(w_hh, x.shape[1], kind),
            _c(b_ih, x),
            _c(b_hh, x),
            _c(m, x),
            False,
        )
        hs = out[0]
        return (hs, (hs[-1], out[1][-1])) if kind == "lstm" else (hs, hs[-1])
    hs, h_n, c_n = _CompiledFn.apply(kind, x, h0, c0, w_ih, w_hh, b_ih, b_hh, m)
    if kind == "lstm":
        return hs, (h_n, c_n)
    return hs, h_n


def run_compiled_zero(
    kind: str,
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    *,
    lead: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """One layer-direction from the zero state (the layers' fast path: no lengths, no ``hx``): :func:`run_compiled`
    with zero states, the final states made their own tensors. The caller has checked :func:`runs_compiled` and
    that the weights have ``x``'s dtype.

    ``x`` ``(T, B, I)``; returns ``(hs (T, B, H), h_T (B, H), c_T (B, H) or None)``, the final states not views of
    ``hs``, as the layers' general path gives them stacked; ``lead``: ``(1, B, H)`` each (a one-layer module's
    ``h_n``). With grad one C++ autograd node (the zero state made inside it); without, one kernel call.
    """
    lstm = kind == "lstm"
    if torch.is_grad_enabled() and (
        x.requires_grad
        or w_ih.requires_grad
        or w_hh.requires_grad
        or (b_ih is not None and b_ih.requires_grad)
        or (b_hh is not None and b_hh.requires_grad)
    ):
        hs, h_n, c_n = _CompiledFn.apply(kind, x, None, None, w_ih, w_hh, b_ih, b_hh, None, lead)
        return hs, h_n, c_n if lstm else None
    zero = x.new_zeros(x.shape[1], w_hh.shape[1])  # (B, H), h0 and c0 alike: the kernel only reads them
    empty = _empty(x)
    out = rnn_extension().layer_forward(
        _CODES[kind],
        x.contiguous(),
        zero,
        zero if lstm else empty,
        w_ih.contiguous(),
        w_hh.contiguous(),
        _step_layout(w_hh, x.shape[1], kind),
        empty if b_ih is None else b_ih.contiguous(),
        empty if b_hh is None else b_hh.contiguous(),
        empty,
        False,
    )
    hs = out[0]
    last = slice(-1, None) if lead else -1
    return hs, hs[last].clone(), out[1][last].clone() if lstm else None


def step_compiled(
    kind: str,
    x_t: Tensor,
    state: Tensor | tuple[Tensor, Tensor],
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
) -> Tensor | tuple[Tensor, Tensor]:
    """One step of one layer without grad (sampling, serving): ``x_t`` ``(B, I)``, ``state`` ``h`` ``(B, H)`` or
    ``(h, c)``; returns the new state. The caller has checked :func:`runs_compiled` and that grad is off; the only
    Python here is the call (``W_hhᵀ`` cached by :func:`_step_layout`, no autograd node, no re-validation)."""
    empty = _empty(x_t)
    h0, c0 = state if kind == "lstm" else (state, empty)
    out = rnn_extension().layer_forward(
        _CODES[kind],
        x_t.unsqueeze(0),
        h0.contiguous(),
        c0.contiguous(),
        w_ih,
        w_hh,
        _step_layout(w_hh, x_t.shape[0], kind),
        empty if b_ih is None else b_ih,
        empty if b_hh is None else b_hh,
        empty,
        False,
    )
    return (out[0][0], out[1][0]) if kind == "lstm" else out[0][0]


_EMPTIES: dict[tuple[torch.dtype, torch.device], Tensor] = {}


def _empty(ref: Tensor) -> Tensor:
    """A cached empty tensor of ``ref``'s dtype and device (the kernel's "None")."""
    key = (ref.dtype, ref.device)
    e = _EMPTIES.get(key)
    if e is None:
        e = _EMPTIES[key] = ref.new_empty(0)
    return e


_SMALL_B = 4
"""Batches up to this size multiply by ``W_hhᵀ`` laid out ``(H, G)`` (``SMALL_B`` in csrc/rnn.cpp)."""

_LAYOUTS: dict[tuple[int, bool], tuple[weakref.ref, int, int, Tensor]] = {}
"""(id(W_hh), panels) → (a weak reference to it, its ``_version`` and storage address, its layout)."""


def _step_layout(w_hh: Tensor, B: int, kind: str) -> Tensor:
    """What the kernel multiplies by at a small batch without grad (sampling, serving), cached per weight tensor and
    rebuilt when the weight changes (its ``_version`` or storage), so a step does not lay it out again: a float32
    LSTM at B = 1 gets ``W_hh`` in panels ``(H/16, H, 64)``, other small batches ``W_hhᵀ`` ``(H, G)``
    (``step_layout`` in csrc/rnn.cpp); an empty tensor (the kernel lays it out itself, or packs ``W_hh``) for larger
    batches."""
    if B > _SMALL_B:
        return _empty(w_hh)
    key = (id(w_hh), kind == "lstm" and B == 1)
    hit = _LAYOUTS.get(key)
    if hit is not None and hit[0]() is w_hh and hit[1] == w_hh._version and hit[2] == w_hh.data_ptr():
        return hit[3]
    layout = rnn_extension().step_layout(_CODES[kind], w_hh.detach(), B)  # a new tensor: W_hhᵀ or panels
    ref = weakref.ref(w_hh, lambda _ref, k=key: _LAYOUTS.pop(k, None))
    _LAYOUTS[key] = (ref, w_hh._version, w_hh.data_ptr(), layout)
    return layout


def _c(t: Tensor | None, ref: Tensor) -> Tensor:
    """A contiguous tensor for the kernel; the cached empty one stands for None."""
    return _empty(ref) if t is None else t.contiguous()


class _CompiledFn:
    """One layer-direction with grad as one autograd node: the C++ ``layer_train`` (forward, and a backward that
    is a C++ autograd node, so no Python runs between the autograd engine and the kernels). ``apply`` takes
    ``(kind, x (T, B, I), h0 (B, H) or None for zeros, c0 (lstm) or None, w_ih, w_hh, b_ih, b_hh, mask (T, B)
    or None, lead)`` and returns ``(hs (T, B, H), h_T (B, H), c_T (B, H); empty and not differentiable but for
    lstm)``; with ``lead`` the finals are ``(1, B, H)`` (a one-layer module's ``h_n``, without an unsqueeze node:
    it cost about as much as the rest of the call's autograd bookkeeping)."""

    @staticmethod
    def apply(
        kind: str,
        x: Tensor,
        h0: Tensor | None,
        c0: Tensor | None,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor | None,
        b_hh: Tensor | None,
        mask: Tensor | None,
        lead: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor]:
        return tuple(rnn_extension().layer_train(_CODES[kind], x, h0, c0, w_ih, w_hh, b_ih, b_hh, mask, lead))


_KINDS = {code: kind for kind, code in _CODES.items()}


def _double_backward(code, x, h0, c0, w_ih, w_hh, b_ih, b_hh, mask, d_hs, d_hn, d_cn):
    """``layer_train``'s backward under ``create_graph=True`` (called from C++; None stands for an absent input):
    the gradients of ``(x, h0, c0, w_ih, w_hh, b_ih, b_hh)`` as autograd functions of them."""
    empty = x.new_empty(0)
    args = [empty if t is None else t for t in (c0, b_ih, b_hh, mask)]
    c0, b_ih, b_hh, mask = args
    return _differentiable_backward(_KINDS[code], x, h0, c0, w_ih, w_hh, b_ih, b_hh, mask, d_hs, d_hn, d_cn)[:7]


def _differentiable_backward(kind, x, h0, c0, w_ih, w_hh, b_ih, b_hh, mask, d_hs, d_hn, d_cn):
    """The gradients of the layer-direction as autograd functions of its inputs (for ``create_graph=True``)."""
    mask = mask if mask.numel() else None  # the kernel's empty tensors stand for None
    b_ih, b_hh = (b_ih, b_hh) if b_ih.numel() else (None, None)
    inputs = [x, h0, c0 if kind == "lstm" else None, w_ih, w_hh, b_ih, b_hh]
    live = [t for t in inputs if t is not None and t.requires_grad]
    with torch.enable_grad():
        xp, b_gated = project_inputs(kind, x, w_ih, w_hh, b_ih, b_hh)
        state0 = (h0, c0) if kind == "lstm" else h0
        hs, final = reference_recurrence(kind, xp, state0, w_hh, b_gated, mask)
        outs, grads = [hs], [d_hs]
        if d_hn is not None:
            outs.append(final[0] if kind == "lstm" else final)
            grads.append(d_hn)
        if kind == "lstm" and d_cn is not None and d_cn.numel():
            outs.append(final[1])
            grads.append(d_cn)
        found = torch.autograd.grad(outs, live, grads, create_graph=True, allow_unused=True) if live else ()
    by_id = {id(t): g for t, g in zip(live, found, strict=True)}
    return (*tuple(None if t is None else by_id.get(id(t)) for t in inputs), None)


def reference_recurrence(
    kind: str,
    xp: Tensor,
    state0: Tensor | tuple[Tensor, Tensor],
    w_hh: Tensor,
    b_hn: Tensor | None = None,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
    """The recurrence on the projected inputs ``xp`` ``(T, B, G·H)`` as plain autograd ops (the compiled kernel's
    equations, one step at a time; ``mask`` ``(T, B)`` or None). Returns ``(hs (T, B, H), final state)``."""
    H = w_hh.shape[1]
    keep = None if mask is None else (mask > 0).unsqueeze(-1)  # (T, B, 1)
    state = state0
    hs = []
    for t, x in enumerate(xp.unbind(0)):  # x (B, G·H)
        if kind in ("rnn_tanh", "rnn_relu"):
            a = x + state @ w_hh.t()
            new = torch.relu(a) if kind == "rnn_relu" else torch.tanh(a)
        elif kind == "lstm":
            h, c = state
            i, f, g, o = (x + h @ w_hh.t()).split(H, dim=1)  # 4 × (B, H)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            new = (torch.sigmoid(o) * torch.tanh(c_new), c_new)
        elif kind == "gru":
            gh = state @ w_hh.t()  # (B, 3H)
            ghn = gh[:, 2 * H :] if b_hn is None else gh[:, 2 * H :] + b_hn
            r = torch.sigmoid(x[:, :H] + gh[:, :H])
            z = torch.sigmoid(x[:, H : 2 * H] + gh[:, H : 2 * H])
            n = torch.tanh(x[:, 2 * H :] + r * ghn)
            new = n + z * (state - n)
        elif kind == "gru_before":
            rz = torch.sigmoid(x[:, : 2 * H] + state @ w_hh[: 2 * H].t())
            r, z = rz[:, :H], rz[:, H:]
            n = torch.tanh(x[:, 2 * H :] + (r * state) @ w_hh[2 * H :].t())
            new = n + z * (state - n)
        else:
            raise ValueError(f"no compiled recurrence for kind {kind!r}; expected one of {tuple(_CODES)}")
        if keep is not None:
            if isinstance(new, tuple):
                new = tuple(torch.where(keep[t], a, b) for a, b in zip(new, state, strict=True))
            else:
                new = torch.where(keep[t], new, state)
        state = new
        hs.append(state[0] if isinstance(state, tuple) else state)
    return torch.stack(hs), state
