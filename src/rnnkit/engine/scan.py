"""The diagonal linear recurrence ``h_t = a_t ⊙ h_{t−1} + b_t`` over a whole sequence, on three exact paths.

Shape symbols: T time, B batch, H hidden (every ``(B, H)`` channel is independent: the recurrence has no matrix
product, so its cost is a few memory passes over ``(T, B, H)``).

Input-gated recurrences (minGRU, minLSTM, LRU/Mamba-style diagonal layers) reduce to this one recurrence once their
coefficients ``a_t``, ``b_t`` are computed from the input for all ``T`` at once. Paths (one job; tests/test_min_rnn.py
asserts they agree, forward and backward, in float64):

* ``"compiled"`` — a C++ loop (``csrc/linear_scan.cpp``, built on first use by :mod:`rnnkit.engine.build`) over
  time, vectorised over the ``B·H`` channels, with a hand-written backward (the reverse recurrence
  ``dh_t = g_t + a_{t+1} dh_{t+1}``). CPU, float32/float64. Sequential in time, each step one fused pass; the
  channels are split between torch's threads (compiled with ``-fopenmp``), each channel's arithmetic the same for
  any split, so results are bit-identical for any number of threads.
* ``"sequential"`` — the same forward and backward loops in PyTorch (``addcmul`` per step): the fallback where
  the compiled kernels are off (``RNNKIT_COMPILED=0``), missing, or the dtype/device has none.
* ``"scan"`` — a log-space parallel scan (Heinsen's ``logcumsumexp`` form) in ``O(log T)`` depth: within chunks
  of :data:`CHUNK` steps ``h_t = e^{a*_t}·h_0 + Σ_k e^{a*_t − a*_k} b_k`` with ``a*`` the cumulative ``log a``
  inside the chunk, split into the positive and negative parts of ``b`` (any sign of ``b`` and ``h_0`` is
  exact); the chunks' end states are joined by the same scan one level up (recursively). Exponents stay within
  one chunk's cumulative ``log a``, which bounds the float32 error; the transient memory is a few ``(T, B, H)``
  tensors, never ``(T, T)``; the backward is the same scan run on the reversed, shifted coefficients, so only
  ``log a``, ``b``'s shape and ``h`` are saved. Callers with ``a_t > 0`` pass ``log a`` directly (minGRU's
  ``−softplus(k)`` never underflows to ``log 0``); given ``a`` with some ``a_t ≤ 0`` it scans ``log |a|`` and
  carries the signs apart (``Π a = s*·e^{Σ log |a|}`` with ``s*`` the running product of the signs), so any sign
  is exact (``a = 0`` acts as the smallest normal number, as an underflowing ``log a`` does).

Policy (:func:`resolve_method`, ``method="auto"``): the parallel scan where parallelism pays — CUDA and other
accelerators, where one ``logcumsumexp`` over ``T`` beats ``T`` kernel launches; on the CPU the compiled loop
(a 2-core CPU has little parallelism to exploit, and the scan's transcendentals cost more than the loop), else
the PyTorch loop.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from rnnkit.engine.build import extension_status, load_threaded_extension

__all__ = ["CHUNK", "FUSED_KINDS", "SCAN_METHODS", "compiled_scan_available", "fused_min_scan", "fused_min_step",
           "linear_scan", "resolve_method"]  # fmt: skip

SCAN_METHODS = ("auto", "compiled", "sequential", "scan")
"""The paths of :func:`linear_scan` (``"auto"`` picks one per device, see the module docstring)."""

CHUNK = 16
"""Steps per chunk of the log-space scan. The float32 error grows with the cumulative ``log a`` inside a chunk
(measured at T = 10⁴, minGRU-like gates: 0.7e-5, 1.7e-5, 4.5e-5, 1.6e-4 of max|h| for 8, 16, 32, 64 steps); 16 keeps
three recursion levels up to T = 65,536."""

_EXTENSION = "linear_scan"


def _kernels():
    return load_threaded_extension(_EXTENSION, ["linear_scan.cpp"])


def compiled_scan_available() -> bool:
    """True when the compiled loop is built (or builds now) and loads; False when it is off or cannot build."""
    return _kernels() is not None


def resolve_method(method: str, device: torch.device, dtype: torch.dtype) -> str:
    """The concrete path for ``method`` on ``device``/``dtype``: ``"compiled"``, ``"sequential"`` or ``"scan"``.

    ``"auto"``: ``"scan"`` off the CPU, ``"compiled"`` on the CPU when the kernels load and the dtype is
    float32/float64, else ``"sequential"``. An explicit ``"compiled"`` that cannot run raises ValueError.
    """
    if method not in SCAN_METHODS:
        raise ValueError(f"method must be one of {SCAN_METHODS}, got {method!r}")
    compiled_ok = device.type == "cpu" and dtype in (torch.float32, torch.float64)
    if method == "auto":
        if device.type != "cpu":
            return "scan"
        return "compiled" if compiled_ok and _kernels() is not None else "sequential"
    if method == "compiled":
        if not compiled_ok:
            raise ValueError(f"method='compiled' runs on the CPU in float32/float64, got {device.type} {dtype}")
        if _kernels() is None:
            raise ValueError(f"method='compiled' is unavailable ({extension_status(_EXTENSION)}); use 'auto'")
    return method


def linear_scan(
    a: Tensor, b: Tensor, h0: Tensor, method: str = "auto", *, log_a: bool = False, chunk: int = CHUNK
) -> Tensor:
    """All states of ``h_t = a_t ⊙ h_{t−1} + b_t``, differentiable in ``a``, ``b`` and ``h0``.

    Args:
        a: ``(T, *S)`` coefficients of any sign, or their logarithms when ``log_a=True`` (the ``"scan"`` path
            works in log space: give ``log a`` directly where it has a stable form; given ``a`` with any
            ``a ≤ 0`` it scans ``log |a|`` with the signs carried apart, exact for every sign, ``a = 0`` acting as
            the smallest normal number). ``S`` is any state shape, e.g. ``(B, H)``.
        b: ``(T, *S)`` inputs. h0: ``(*S)`` the state before step 0.
        method: one of :data:`SCAN_METHODS`. chunk: steps per chunk of the log-space scan.
    Returns:
        ``hs`` ``(T, *S)``: ``hs[t]`` is ``h_t``; ``hs[-1]`` the final state.
    """
    if a.shape != b.shape or a.shape[1:] != h0.shape:
        raise ValueError(f"linear_scan: a {tuple(a.shape)}, b {tuple(b.shape)} and h0 {tuple(h0.shape)} disagree")
    if a.shape[0] == 0:
        raise ValueError("linear_scan: the sequence must have at least one step")
    path = resolve_method(method, b.device, b.dtype)
    if path == "scan":
        if not log_a:
            if not bool((a > 0).all()):  # a ≤ 0 somewhere: the signed log-space scan (log |a| and the signs)
                return _SignedLogScanFn.apply(a, b, h0, chunk)
            a = torch.log(a)
        return _LogScanFn.apply(a, b, h0, chunk)
    if log_a:
        a = torch.exp(a)
    if path == "compiled":
        return _CompiledFn.apply(a, b, h0)
    return _SequentialFn.apply(a, b, h0)


FUSED_KINDS = {"mingru": 0, "minlstm": 1}
_FUSED_CHUNK_VALUES = 0  # values of P per chunk of the fused layer; 0: the kernel's default (tests set a few)
"""Cells whose gate math the compiled loop fuses (:func:`fused_min_scan`), and their kernel codes."""


def fused_min_scan(
    kind: str, x: Tensor, weight: Tensor, bias: Tensor | None, h0: Tensor, mask: Tensor | None = None
) -> Tensor:
    """One minGRU/minLSTM layer direction on the compiled loop, the gate math inside it (CPU, float32/float64).

    ``x`` ``(T, B, I)``, ``weight`` ``(G·H, I)`` and ``bias`` ``(G·H)`` or None in the cell's gate order (minGRU
    ``[k, c]``, minLSTM ``[k_f, k_i, c]``), ``h0`` ``(B, H)``, ``mask`` ``(T, B, 1)`` of 0/1 or None. Returns
    ``hs`` ``(T, B, H)``; a masked step carries the state. Differentiable in ``x``, ``weight``, ``bias``, ``h0``.

    One C++ call each way. Time is cut into chunks of about 512 KB of ``P = x W^T``: per chunk the matrix product
    (no bias) writes ``P``, then one pass adds the bias, forms the gates and runs the recurrence while ``P`` is in
    the cache; backwards, one pass recomputes the gates from ``P``, writes the chunk's ``dL/dP`` into a cache-sized
    buffer and sums the bias gradient, and the two matrix products of the projection's backward read it at once.
    Without autograd no ``P`` of the whole sequence is made. Kept for the backward pass: ``x``, ``P``, ``hs``.
    Equal to the coefficients through autograd to rounding (tests/test_min_rnn.py). Needs the compiled kernels
    (:func:`compiled_scan_available`).
    """
    m = x.new_empty(0) if mask is None else mask.reshape(mask.shape[0], mask.shape[1]).to(x.dtype).contiguous()
    kind_code = FUSED_KINDS[kind]
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias, h0)):
        return _FusedMinFn.apply(kind_code, x, weight, bias, h0, m)
    bias_ = bias if bias is not None else weight.new_zeros(weight.shape[0])
    return _kernels().min_layer_forward(kind_code, x.contiguous(), weight.contiguous(), bias_.contiguous(),
                                        h0.contiguous(), m, False, _FUSED_CHUNK_VALUES)[0]  # fmt: skip


def fused_min_step(kind: str, x: Tensor, weights: list[Tensor], biases: list[Tensor | None], h: Tensor) -> Tensor:
    """One streaming step of a stack of minGRU/minLSTM layers in one C++ call (no autograd; CPU).

    ``x`` ``(B, I)``, ``weights[l]`` ``(G·H, I_l)``, ``biases[l]`` ``(G·H)`` or None, ``h`` ``(L, B, H)``.
    Returns the new state ``(L, B, H)``; its last row is the top layer's output.
    """
    bs = [b if b is not None else w.new_zeros(w.shape[0]) for w, b in zip(weights, biases, strict=True)]
    return _kernels().min_step(FUSED_KINDS[kind], x.contiguous(), weights, bs, h.contiguous())


class _FusedMinFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, kind: int, x: Tensor, w: Tensor, b: Tensor | None, h0: Tensor, mask: Tensor):
        x, w, h0 = x.contiguous(), w.contiguous(), h0.contiguous()
        bias = b.contiguous() if b is not None else w.new_zeros(w.shape[0])
        # hs (T, B, H) and P = x W^T (T, B, G·H), kept for the backward pass
        hs, P = _kernels().min_layer_forward(kind, x, w, bias, h0, mask, True, _FUSED_CHUNK_VALUES)
        ctx.save_for_backward(x, w, bias, P, hs, h0, mask)
        ctx.kind = kind
        ctx.has_bias = b is not None
        return hs

    @staticmethod
    def backward(ctx: FunctionCtx, g: Tensor):
        x, w, bias, P, hs, h0, mask = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        dx, dw, dbias, dh0 = _kernels().min_layer_backward(
            ctx.kind, x, w, bias, P, hs, h0, mask, _strided_grad(g), need_x, need_w, _FUSED_CHUNK_VALUES
        )
        return (None, dx if need_x else None, dw if need_w else None, dbias if ctx.has_bias else None, dh0, None)


def _strided_grad(g: Tensor) -> Tensor:
    """``g`` ``(T, B, H)`` as the kernel reads it: any strides over T and B, stride 1 or 0 over H, else a copy.

    The gradient of ``out.sum()`` (or of a mean) is one value expanded to ``(T, B, H)``, all strides 0: read in
    place it spares a write and a read of the whole ``(T, B, H)`` (67 MB at T = 4,096, B = 16, H = 256).
    """
    return g if g.stride(2) in (0, 1) else g.contiguous()


# ---------------------------------------------------------------------------------------------- sequential paths
def _flat(x: Tensor, T: int) -> Tensor:
    return x.reshape(T, -1).contiguous()  # (T, N), N = B·H


class _CompiledFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
        T = a.shape[0]
        a2, h02 = _flat(a, T), h0.reshape(-1).contiguous()
        hs = _kernels().forward(a2, _flat(b, T), h02)  # (T, N)
        ctx.save_for_backward(a2, hs, h02)
        ctx.shape = a.shape
        return hs.view(a.shape)

    @staticmethod
    def backward(ctx: FunctionCtx, g: Tensor):
        a2, hs, h02 = ctx.saved_tensors
        da, db, dh0 = _kernels().backward(a2, hs, h02, _flat(g, a2.shape[0]))
        return da.view(ctx.shape), db.view(ctx.shape), dh0.view(ctx.shape[1:])


class _SequentialFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
        hs = torch.empty_like(b)  # (T, *S)
        prev = h0
        for a_t, b_t, h_t in zip(a.unbind(0), b.unbind(0), hs.unbind(0), strict=True):
            prev = torch.addcmul(b_t, a_t, prev, out=h_t)
        ctx.save_for_backward(a, hs, h0)
        return hs

    @staticmethod
    def backward(ctx: FunctionCtx, g: Tensor):
        a, hs, h0 = ctx.saved_tensors
        dh = torch.empty_like(g)  # dh_t = g_t + a_{t+1} dh_{t+1} = ∂L/∂b_t
        carry = torch.zeros_like(h0)
        for t in range(g.shape[0] - 1, -1, -1):  # no autograd here: plain views of plain tensors
            torch.add(g[t], carry, out=dh[t])
            carry = a[t] * dh[t]
        prev = torch.cat([h0.unsqueeze(0), hs[:-1]])  # (T, *S): h_{t−1}
        return dh * prev, dh, carry


# ---------------------------------------------------------------------------------------------- log-space scan
class _LogScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, log_a: Tensor, b: Tensor, h0: Tensor, chunk: int) -> Tensor:
        floor = math.log(torch.finfo(log_a.dtype).tiny)  # a below the smallest normal number acts as a = tiny
        la = log_a.clamp(min=floor)
        hs = _scan(la, b, h0, chunk)
        ctx.save_for_backward(la, hs, h0)
        ctx.chunk = chunk
        return hs

    @staticmethod
    def backward(ctx: FunctionCtx, g: Tensor):
        la, hs, h0 = ctx.saved_tensors
        # dh_t = g_t + a_{t+1} dh_{t+1}: the same recurrence backwards in time, with the coefficients shifted
        la_next = torch.cat([la[1:], torch.zeros_like(la[:1])])  # (T, *S); the last one multiplies dh_T = 0
        dh = _scan(la_next.flip(0), g.flip(0), torch.zeros_like(h0), ctx.chunk).flip(0)
        a = torch.exp(la)
        prev = torch.cat([h0.unsqueeze(0), hs[:-1]])  # h_{t−1}
        d_log_a = dh * a * prev  # ∂h_t/∂log a_t = a_t h_{t−1}
        return d_log_a, dh, a[0] * dh[0], None


class _SignedLogScanFn(torch.autograd.Function):
    """The log-space scan for coefficients of any sign: ``log |a|`` scanned, the signs ``±1`` carried apart."""

    @staticmethod
    def forward(ctx: FunctionCtx, a: Tensor, b: Tensor, h0: Tensor, chunk: int) -> Tensor:
        floor = math.log(torch.finfo(a.dtype).tiny)  # |a| below the smallest normal number acts as that number
        la = torch.log(a.abs()).clamp(min=floor)
        sign = torch.where(a < 0, -1.0, 1.0).to(a.dtype)
        hs = _scan(la, b, h0, chunk, sign)
        ctx.save_for_backward(la, sign, hs, h0)
        ctx.chunk = chunk
        return hs

    @staticmethod
    def backward(ctx: FunctionCtx, g: Tensor):
        la, sign, hs, h0 = ctx.saved_tensors
        # dh_t = g_t + a_{t+1} dh_{t+1}, the same signed scan backwards in time
        la_next = torch.cat([la[1:], torch.zeros_like(la[:1])])
        sign_next = torch.cat([sign[1:], torch.ones_like(sign[:1])])
        dh = _scan(la_next.flip(0), g.flip(0), torch.zeros_like(h0), ctx.chunk, sign_next.flip(0)).flip(0)
        a_used = sign * torch.exp(la)  # a as the scan used it (|a| at least the smallest normal number)
        prev = torch.cat([h0.unsqueeze(0), hs[:-1]])  # h_{t−1}
        return dh * prev, dh, a_used[0] * dh[0], None


def _scan(la: Tensor, b: Tensor, h0: Tensor, chunk: int, sign: Tensor | None = None) -> Tensor:
    """Forward values of the scan (no autograd): chunks scanned in parallel, their joins by recursion.

    ``sign`` (``±1``, like ``la``) or None (every ``a > 0``): the coefficients are ``sign · e^{la}``.
    """
    T = la.shape[0]
    if chunk >= T:
        sg = None if sign is None else sign.unsqueeze(0)
        return _block(la.unsqueeze(0), b.unsqueeze(0), h0.unsqueeze(0), sg)[0][0]
    n = -(-T // chunk)  # chunks
    pad = n * chunk - T
    if pad:  # padded steps carry the state: log a = 0, b = 0
        la = torch.cat([la, la.new_zeros((pad, *la.shape[1:]))])
        b = torch.cat([b, b.new_zeros((pad, *b.shape[1:]))])
        if sign is not None:
            sign = torch.cat([sign, sign.new_ones((pad, *sign.shape[1:]))])
    rest = la.shape[1:]
    la_c = la.reshape(n, chunk, *rest)  # (n, C, *S)
    sg_c = None if sign is None else sign.reshape(n, chunk, *rest)
    local, a_star, s_star = _block(la_c, b.reshape(n, chunk, *rest), None, sg_c)  # each chunk from a zero state
    # each chunk's end state is a linear recurrence over chunks: H_j = ±e^{a*_j,end} H_{j−1} + local_j,end
    ends = _scan(a_star[:, -1], local[:, -1], h0, chunk, None if s_star is None else s_star[:, -1])  # (n, *S)
    starts = torch.cat([h0.unsqueeze(0), ends[:-1]])  # (n, *S): the state entering each chunk
    carried = torch.exp(a_star) if s_star is None else s_star * torch.exp(a_star)
    hs = local + carried * starts.unsqueeze(1)  # (n, C, *S)
    return hs.reshape(n * chunk, *rest)[:T]


def _block(
    la: Tensor, b: Tensor, h0: Tensor | None, sign: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Scan over dim 1 of ``(n, C, *S)`` blocks in log space. Returns ``(hs, a*, s*)``, each ``(n, C, *S)``.

    With ``sign``, ``a = sign · e^{la}`` and ``s*`` is the sign of ``Π_{j≤t} a_j`` (else None): since
    ``Π_{k<j≤t} a_j = s*_t s*_k e^{a*_t − a*_k}``, the signed scan is the positive one run on ``s*_k b_k``, times
    ``s*_t``.
    """
    a_star = torch.cumsum(la, dim=1)  # log Π_{j≤t} |a_j| within the block
    s_star = None if sign is None else torch.cumprod(sign, dim=1)
    if s_star is not None:
        b = b * s_star
    hs = _signed_part(b.clamp(min=0), a_star) - _signed_part((-b).clamp(min=0), a_star)
    if h0 is not None:
        hs = hs + torch.exp(a_star) * h0.unsqueeze(1)
    if s_star is not None:
        hs = hs * s_star
    return hs, a_star, s_star


def _signed_part(b_pos: Tensor, a_star: Tensor) -> Tensor:
    """``Σ_{k≤t} e^{a*_t − a*_k} b_k`` for ``b ≥ 0``, as ``exp(a*_t + logcumsumexp(log b_k − a*_k))``."""
    log_b = torch.log(b_pos)  # 0 → −inf: that term drops out of the sum exactly
    return torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1))
