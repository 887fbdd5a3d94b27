"""rnnkit's own BPTT: the input projection hoisted out of the loop, a hand-written backward per kind.

Shape symbols: T time, B batch, I input, H hidden, G gates. See :mod:`rnnkit.engine` for the design; a kind of
:data:`rnnkit.cells.CELLS` without a kernel here runs :func:`rnnkit.engine.loop.run_loop` over its step.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from rnnkit.cells import CELLS
from rnnkit.engine.loop import bind_step, run_loop

__all__ = ["OWN_KERNELS", "project_inputs", "run_own"]

State = Tensor | tuple[Tensor, ...]


def run_own(
    kind: str,
    x: Tensor,
    state0: Tensor | tuple[Tensor, Tensor],
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
    """One direction of one layer through rnnkit's own BPTT.

    Args:
        kind: one of :data:`rnnkit.cells.CELLS`.
        x: ``(T, B, I)``. state0: ``h0`` ``(B, H)``, or ``(h0, c0)`` for LSTM.
        w_ih ``(G·H, I)``, w_hh ``(G·H, H)``, b_ih/b_hh ``(G·H,)`` or None: torch.nn's packed layout.
        mask: ``(T, B, 1)`` of 0/1 in ``x``'s dtype, or None when every sequence has length ``T``.
    Returns:
        ``(hs, final)``: ``hs`` ``(T, B, H)`` every step's state (carried, not zeroed, past a sequence's end)
        and the final state (``h_T`` or ``(h_T, c_T)``).
    """
    spec = CELLS.get(kind)
    if spec is None:
        raise ValueError(f"unknown cell kind {kind!r}; expected one of {tuple(CELLS)}")
    kernel = OWN_KERNELS.get(kind)
    if kernel is None:  # a table entry without a kernel: the autograd loop over its step function
        return run_loop(bind_step(spec.step, (w_ih, w_hh, b_ih, b_hh)), x, state0, mask)
    xp, b_gated = project_inputs(kind, x, w_ih, w_hh, b_ih, b_hh)  # (T, B, G·H)
    return kernel(xp, state0, w_hh, b_gated, mask)


def project_inputs(
    kind: str, x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """The hoisted input projection of one direction: ``(xp (T, B, G·H), b_gated (H,) or None)``.

    ``xp = x W_ihᵀ + b_ih + b_hh`` as one matrix product over all ``T·B`` rows, every bias that sits outside a gate
    product folded in. Where the last gate's hidden bias is multiplied by a gate (reset-after GRU:
    ``r ⊙ (W_hn h + b_hn)``) it stays out of ``xp`` and comes back as ``b_gated`` for the loop.
    """
    spec = CELLS[kind]
    T, B, I = x.shape
    H = w_hh.shape[1]
    G = w_hh.shape[0]
    b_gated = None
    if b_ih is None:
        bias = None
    elif spec.hidden_bias_gated:
        bias = b_ih + torch.cat([b_hh[: G - H], b_hh.new_zeros(H)])
        b_gated = b_hh[G - H :]
    else:
        bias = b_ih + b_hh
    x2 = x.reshape(T * B, I)  # (T·B, I)
    xp = x2 @ w_ih.t() if bias is None else torch.addmm(bias, x2, w_ih.t())  # (T·B, G·H)
    return xp.view(T, B, G), b_gated  # (T, B, G·H)


# ---------------------------------------------------------------------------------------------------- own kernels
# A kernel runs the recurrence on the hoisted projection: kernel(xp (T, B, G·H), state0, w_hh, b_gated, mask)
# -> (hs (T, B, H), final state), b_gated the hidden bias kept in the loop (CellSpec.hidden_bias_gated) or None.


def _rnn_kernel(xp: Tensor, h0: Tensor, w_hh: Tensor, b_gated: None, mask: Tensor | None, *, relu: bool):
    hs = _RNNFn.apply(xp, h0, w_hh, mask, relu)
    return hs, hs[-1]


def _lstm_kernel(xp: Tensor, state0: tuple[Tensor, Tensor], w_hh: Tensor, b_gated: None, mask: Tensor | None):
    h0, c0 = state0
    hs, c_n = _LSTMFn.apply(xp, h0, c0, w_hh, mask)
    return hs, (hs[-1], c_n)


def _gru_after_kernel(xp: Tensor, h0: Tensor, w_hh: Tensor, b_hn: Tensor | None, mask: Tensor | None):
    if b_hn is None:
        b_hn = w_hh.new_zeros(w_hh.shape[1])
    hs = _GRUAfterFn.apply(xp, h0, w_hh, b_hn, mask)
    return hs, hs[-1]


def _gru_before_kernel(xp: Tensor, h0: Tensor, w_hh: Tensor, b_gated: None, mask: Tensor | None):
    hs = _GRUBeforeFn.apply(xp, h0, w_hh, mask)
    return hs, hs[-1]


OWN_KERNELS: dict[str, Callable[..., tuple[Tensor, State]]] = {
    "rnn_tanh": partial(_rnn_kernel, relu=False),
    "rnn_relu": partial(_rnn_kernel, relu=True),
    "lstm": _lstm_kernel,
    "gru": _gru_after_kernel,
    "gru_before": _gru_before_kernel,
}
"""Kinds with a hand-written BPTT kernel (forward in place, backward by hand); the others run :func:`run_loop`."""


def _prev(h0: Tensor, hs: Tensor) -> Tensor:
    """States entering each step: ``(T, B, H)`` = ``[h0, h_1, …, h_{T−1}]``."""
    return torch.cat([h0.unsqueeze(0), hs[:-1]])


def _weight_grad(d_pre: Tensor, inputs: Tensor) -> Tensor:
    """Σ_t d_pre_tᵀ · inputs_t as ONE matrix product over all T·B rows: ``(G·H, H)``."""
    return d_pre.reshape(-1, d_pre.shape[-1]).t() @ inputs.reshape(-1, inputs.shape[-1])


def _mask_terms(mask: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """``m`` and ``1 − m`` as ``(T, B, 1)``, or ``(None, None)`` without a mask."""
    if mask is None:
        return None, None
    return mask, 1 - mask


class _RNNFn(torch.autograd.Function):
    """``h_t = act(xp_t + h_{t−1} W_hhᵀ)`` over all t (``b_hh`` folded into ``xp``)."""

    @staticmethod
    def forward(ctx: FunctionCtx, xp: Tensor, h0: Tensor, w_hh: Tensor, mask: Tensor | None, relu: bool):
        T = xp.shape[0]
        hs = torch.empty_like(xp)  # (T, B, H)
        w_t = w_hh.t()
        keep = None if mask is None else mask > 0
        h = h0
        for t in range(T):
            a = torch.addmm(xp[t], h, w_t, out=hs[t])  # (B, H)
            a = a.clamp_min_(0) if relu else a.tanh_()
            if keep is not None:
                torch.where(keep[t], a, h, out=hs[t])
            h = hs[t]
        ctx.relu = relu
        ctx.save_for_backward(h0, w_hh, hs, mask)
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, d_hs: Tensor):
        h0, w_hh, hs, mask = ctx.saved_tensors
        m, not_m = _mask_terms(mask)
        deriv = (hs > 0).to(hs.dtype) if ctx.relu else 1 - hs * hs  # (T, B, H) act'(a_t)
        if m is not None:
            deriv = deriv * m
        d_a = torch.empty_like(hs)  # (T, B, H)
        dh = torch.zeros_like(h0)
        for t in range(hs.shape[0] - 1, -1, -1):
            g = d_hs[t] + dh  # (B, H) total gradient reaching h_t
            torch.mul(g, deriv[t], out=d_a[t])
            dh = d_a[t] @ w_hh if m is None else torch.addmm(g * not_m[t], d_a[t], w_hh)
        return d_a, dh, _weight_grad(d_a, _prev(h0, hs)), None, None


class _LSTMFn(torch.autograd.Function):
    """LSTM recurrence over all t on the projected inputs ``xp`` ``(T, B, 4H)`` (biases folded in)."""

    @staticmethod
    def forward(ctx: FunctionCtx, xp: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, mask: Tensor | None):
        T, B, G = xp.shape
        H = G // 4
        gates = torch.empty_like(xp)  # (T, B, 4H) activated i, f, g, o
        hs = xp.new_empty(T, B, H)
        cs = xp.new_empty(T, B, H)
        w_t = w_hh.t()
        keep = None if mask is None else mask > 0  # (T, B, 1), once: not a comparison per step
        h, c = h0, c0
        for t in range(T):
            a = torch.addmm(xp[t], h, w_t, out=gates[t])  # (B, 4H)
            a[:, : 2 * H].sigmoid_()
            a[:, 2 * H : 3 * H].tanh_()
            a[:, 3 * H :].sigmoid_()
            i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
            c_new = torch.mul(f, c, out=cs[t]).addcmul_(i, g)  # (B, H)
            h_new = torch.mul(o, torch.tanh(c_new), out=hs[t])
            if keep is not None:
                torch.where(keep[t], c_new, c, out=cs[t])
                torch.where(keep[t], h_new, h, out=hs[t])
            h, c = hs[t], cs[t]
        ctx.save_for_backward(h0, c0, w_hh, gates, hs, cs, mask)
        return hs, cs[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, d_hs: Tensor, d_cn: Tensor):
        h0, c0, w_hh, gates, hs, cs, mask = ctx.saved_tensors
        T, B, G = gates.shape
        H = G // 4
        m, not_m = _mask_terms(mask)
        i, f, g, o = gates.split(H, dim=2)  # 4 × (T, B, H)
        tc = torch.tanh(cs)
        c_prev = _prev(c0, cs)
        # Everything that does not depend on the incoming gradient, over all T at once.
        k_o = tc * o * (1 - o)  # ∂h/∂a_o per unit dh
        k_c = o * (1 - tc * tc)  # ∂h/∂c
        k_ifg = torch.stack([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)], dim=2)  # (T, B, 3, H)
        f_carry = f
        if m is not None:
            k_o, k_c, k_ifg = k_o * m, k_c * m, k_ifg * m.unsqueeze(-1)
            f_carry = f * m + not_m  # a masked step passes dc through unchanged
        d_a = torch.empty_like(gates)  # (T, B, 4H) gradients of the gate pre-activations
        d_ifg = d_a[..., : 3 * H].view(T, B, 3, H)
        dh = torch.zeros_like(h0)
        dc = d_cn.clone()
        for t in range(T - 1, -1, -1):
            gh = d_hs[t] + dh  # (B, H)
            dc = dc.addcmul_(gh, k_c[t])
            torch.mul(dc.unsqueeze(1), k_ifg[t], out=d_ifg[t])  # (B, 3, H)
            torch.mul(gh, k_o[t], out=d_a[t, :, 3 * H :])
            dh = d_a[t] @ w_hh if m is None else torch.addmm(gh * not_m[t], d_a[t], w_hh)
            dc = dc * f_carry[t]
        return d_a, dh, dc, _weight_grad(d_a, _prev(h0, hs)), None


class _GRUAfterFn(torch.autograd.Function):
    """torch.nn's GRU recurrence (reset after the product) on ``xp`` ``(T, B, 3H)``; ``b_hn`` stays inside."""

    @staticmethod
    def forward(ctx: FunctionCtx, xp: Tensor, h0: Tensor, w_hh: Tensor, b_hn: Tensor, mask: Tensor | None):
        T, B, G = xp.shape
        H = G // 3
        b_gh = torch.cat([b_hn.new_zeros(2 * H), b_hn])  # (3H,)
        gh = torch.empty_like(xp)  # (T, B, 3H) hidden products, b_hn included
        rz = xp.new_empty(T, B, 2 * H)
        ns = xp.new_empty(T, B, H)
        hs = xp.new_empty(T, B, H)
        w_t = w_hh.t()
        keep = None if mask is None else mask > 0  # (T, B, 1)
        h = h0
        for t in range(T):
            ght = torch.addmm(b_gh, h, w_t, out=gh[t])  # (B, 3H)
            torch.add(xp[t, :, : 2 * H], ght[:, : 2 * H], out=rz[t]).sigmoid_()
            r, z = rz[t, :, :H], rz[t, :, H:]
            n = torch.addcmul(xp[t, :, 2 * H :], r, ght[:, 2 * H :], out=ns[t]).tanh_()
            h_new = torch.addcmul(n, z, h - n, out=hs[t])
            if keep is not None:
                torch.where(keep[t], h_new, h, out=hs[t])
            h = hs[t]
        ctx.save_for_backward(h0, w_hh, gh, rz, ns, hs, mask)
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, d_hs: Tensor):
        h0, w_hh, gh, rz, ns, hs, mask = ctx.saved_tensors
        T, B, G = gh.shape
        H = G // 3
        m, not_m = _mask_terms(mask)
        r, z = rz[..., :H], rz[..., H:]
        h_prev = _prev(h0, hs)
        k_n = (1 - z) * (1 - ns * ns)  # ∂h/∂a_n
        k_z = (h_prev - ns) * z * (1 - z)  # ∂h/∂a_z
        z_carry = z
        if m is not None:
            k_n, k_z = k_n * m, k_z * m
            z_carry = z * m + not_m
        # Per step the loop fills d_gh = [d_r, d_z, d_n ⊙ r] (gradient of the hidden products) in one op for z
        # and n, and derives d_r from d_n ⊙ r: d_a_r = d_n · gh_n · r(1 − r) = (d_n ⊙ r) · gh_n · (1 − r).
        k_zn = torch.stack([k_z, k_n * r], dim=2)  # (T, B, 2, H)
        k_r = gh[..., 2 * H :] * (1 - r)
        d_gh = torch.empty_like(gh)  # (T, B, 3H)
        d_zn = d_gh[..., H:].view(T, B, 2, H)
        g_all = torch.empty_like(hs)  # (T, B, H) total gradient reaching each h_t
        dh = torch.zeros_like(h0)
        for t in range(T - 1, -1, -1):
            gt = torch.add(d_hs[t], dh, out=g_all[t])  # (B, H)
            torch.mul(gt.unsqueeze(1), k_zn[t], out=d_zn[t])  # (B, 2, H)
            torch.mul(d_gh[t, :, 2 * H :], k_r[t], out=d_gh[t, :, :H])
            dh = torch.addmm(gt * z_carry[t], d_gh[t], w_hh)
        d_xp = d_gh.clone()
        torch.mul(g_all, k_n, out=d_xp[..., 2 * H :])  # d_a_n (the input side is not multiplied by r)
        d_b_hn = d_gh[..., 2 * H :].sum(dim=(0, 1))
        return d_xp, dh, _weight_grad(d_gh, h_prev), d_b_hn, None


class _GRUBeforeFn(torch.autograd.Function):
    """The lecture's GRU (reset before the product) on ``xp`` ``(T, B, 3H)``; every bias folded into ``xp``."""

    @staticmethod
    def forward(ctx: FunctionCtx, xp: Tensor, h0: Tensor, w_hh: Tensor, mask: Tensor | None):
        T, B, G = xp.shape
        H = G // 3
        w_rz_t, w_n_t = w_hh[: 2 * H].t(), w_hh[2 * H :].t()
        rz = xp.new_empty(T, B, 2 * H)
        rh = xp.new_empty(T, B, H)  # r ⊙ h_{t−1}, the input of the candidate's product
        ns = xp.new_empty(T, B, H)
        hs = xp.new_empty(T, B, H)
        keep = None if mask is None else mask > 0  # (T, B, 1)
        h = h0
        for t in range(T):
            torch.addmm(xp[t, :, : 2 * H], h, w_rz_t, out=rz[t]).sigmoid_()
            z = rz[t, :, H:]
            torch.mul(rz[t, :, :H], h, out=rh[t])
            n = torch.addmm(xp[t, :, 2 * H :], rh[t], w_n_t, out=ns[t]).tanh_()
            h_new = torch.addcmul(n, z, h - n, out=hs[t])
            if keep is not None:
                torch.where(keep[t], h_new, h, out=hs[t])
            h = hs[t]
        ctx.save_for_backward(h0, w_hh, rz, rh, ns, hs, mask)
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, d_hs: Tensor):
        h0, w_hh, rz, rh, ns, hs, mask = ctx.saved_tensors
        T, B, H = hs.shape
        m, not_m = _mask_terms(mask)
        r, z = rz[..., :H], rz[..., H:]
        h_prev = _prev(h0, hs)
        w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H :]
        k_zn = torch.stack([(h_prev - ns) * z * (1 - z), (1 - z) * (1 - ns * ns)], dim=2)  # (T, B, 2, H)
        k_r = h_prev * r * (1 - r)
        r_carry, z_carry = r, z
        if m is not None:
            k_zn = k_zn * m.unsqueeze(-1)
            z_carry = z * m + not_m
        d_a = rz.new_empty(T, B, 3 * H)  # (T, B, 3H) pre-activation grads r, z, n
        d_zn = d_a[..., H:].view(T, B, 2, H)
        dh = torch.zeros_like(h0)
        for t in range(T - 1, -1, -1):
            gt = d_hs[t] + dh  # (B, H)
            torch.mul(gt.unsqueeze(1), k_zn[t], out=d_zn[t])  # (B, 2, H)
            d_rh = d_a[t, :, 2 * H :] @ w_n  # (B, H)
            torch.mul(d_rh, k_r[t], out=d_a[t, :, :H])
            dh = (gt * z_carry[t]).addcmul_(d_rh, r_carry[t])
            dh = torch.addmm(dh, d_a[t, :, : 2 * H], w_rz)
        d_w = torch.cat([_weight_grad(d_a[..., : 2 * H], h_prev), _weight_grad(d_a[..., 2 * H :], rh)])
        return d_a, dh, d_w, None
