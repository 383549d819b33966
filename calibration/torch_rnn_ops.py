"""ONNX LSTM, GRU and RNN as explicit per-time-step torch ops (twice differentiable).

Registered into `torch_ops.OPS`. Internally every tensor is in layout 0: X [seq, batch, in],
states [dirs, batch, hidden]; outputs Y [seq, dirs, batch, hidden], Y_h / Y_c [dirs, batch, hidden].
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F

from onnx_hawq.calibration.torch_ops import Attrs, op
from onnx_hawq.errors import HawqError

# name -> (function of (x, alpha, beta), uses alpha, uses beta, default alpha, default beta)
_ACTS: dict[str, tuple[Callable, bool, bool, float, float]] = {
    "relu": (lambda x, a, b: torch.relu(x), False, False, 0.0, 0.0),
    "tanh": (lambda x, a, b: torch.tanh(x), False, False, 0.0, 0.0),
    "sigmoid": (lambda x, a, b: torch.sigmoid(x), False, False, 0.0, 0.0),
    "affine": (lambda x, a, b: a * x + b, True, True, 1.0, 0.0),
    "leakyrelu": (lambda x, a, b: F.leaky_relu(x, a), True, False, 0.01, 0.0),
    "thresholdedrelu": (lambda x, a, b: torch.where(x > a, x, torch.zeros_like(x)), True, False, 1.0, 0.0),
    "scaledtanh": (lambda x, a, b: a * torch.tanh(b * x), True, True, 1.0, 1.0),
    "hardsigmoid": (lambda x, a, b: torch.clamp(a * x + b, 0.0, 1.0), True, True, 0.2, 0.5),
    "elu": (lambda x, a, b: torch.where(x >= 0, x, a * torch.expm1(x)), True, False, 1.0, 0.0),
    "softsign": (lambda x, a, b: x / (1 + x.abs()), False, False, 0.0, 0.0),
    "softplus": (lambda x, a, b: F.softplus(x), False, False, 0.0, 0.0),
}


def activations(a: Attrs, defaults: list[str], n_dir: int) -> list[list[Callable]]:
    """The `activations` / `activation_alpha` / `activation_beta` attributes -> per-direction functions."""
    names = list(a.get("activations") or defaults * n_dir)
    if len(names) != len(defaults) * n_dir:
        raise HawqError(f"{a.op} needs {len(defaults) * n_dir} activations, got {len(names)}")
    alphas, betas = list(a.get("activation_alpha") or []), list(a.get("activation_beta") or [])
    fns = []
    for name in names:
        if name.lower() not in _ACTS:
            raise HawqError(f"{a.op} activation {name!r} is not supported")
        fn, uses_a, uses_b, da, db = _ACTS[name.lower()]
        alpha = alphas.pop(0) if uses_a and alphas else da
        beta = betas.pop(0) if uses_b and betas else db
        fns.append(lambda x, fn=fn, alpha=alpha, beta=beta: fn(x, alpha, beta))
    k = len(defaults)
    return [fns[d * k:(d + 1) * k] for d in range(n_dir)]


@dataclasses.dataclass(frozen=True)
class Direction:
    """One direction's weights: W [gates*H, in], R [gates*H, H], Wb / Rb [gates*H], P [3H] or None."""

    w: torch.Tensor
    r: torch.Tensor
    wb: torch.Tensor
    rb: torch.Tensor
    p: torch.Tensor | None
    acts: list[Callable]


def _clip(a: Attrs):
    limit = a.get("clip")
    return (lambda t: t) if limit is None else (lambda t: torch.clamp(t, -limit, limit))


def lstm_cell(a: Attrs, d: Direction, xw, h, c):
    """One LSTM step from the precomputed input projection `xw` -> (H_t, C_t); gates iofc."""
    f, g, hact = d.acts
    clip = _clip(a)
    gates = xw + h @ d.r.t() + d.rb
    gi, go, gf, gc = gates.chunk(4, dim=-1)
    pi, po, pf = d.p.chunk(3) if d.p is not None else (0, 0, 0)
    i = f(clip(gi + pi * c))
    ft = 1 - i if a.get("input_forget", 0) else f(clip(gf + pf * c))
    c_new = ft * c + i * g(clip(gc))
    o = f(clip(go + po * c_new))
    return o * hact(c_new), c_new


def gru_cell(a: Attrs, d: Direction, xw, h, c=None):
    """One GRU step -> (H_t, None); gates zrh, linear_before_reset as in the ONNX spec."""
    f, g = d.acts
    clip = _clip(a)
    xz, xr, xh = xw.chunk(3, dim=-1)
    rz, rr, rh = d.r.chunk(3, dim=0)
    bz, br, bh = d.rb.chunk(3)
    z = f(clip(xz + h @ rz.t() + bz))
    r = f(clip(xr + h @ rr.t() + br))
    if a.get("linear_before_reset", 0):
        ht = g(clip(xh + r * (h @ rh.t() + bh)))
    else:
        ht = g(clip(xh + (r * h) @ rh.t() + bh))
    return (1 - z) * ht + z * h, None


def rnn_cell(a: Attrs, d: Direction, xw, h, c=None):
    """One simple RNN step -> (H_t, None)."""
    return d.acts[0](_clip(a)(xw + h @ d.r.t() + d.rb)), None


def run_direction(a: Attrs, cell, d: Direction, x, h, c, lens, reverse: bool):
    """Run `cell` over x [seq, batch, in] -> (Y [seq, batch, H], last H, last C); steps t >= lens keep state."""
    xw = x @ d.w.t() + d.wb
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    ys = [None] * x.shape[0]
    for t in steps:
        h_new, c_new = cell(a, d, xw[t], h, c)
        if lens is None:
            h, c, ys[t] = h_new, c_new, h_new
            continue
        live = (lens > t).reshape(-1, 1)
        h = torch.where(live, h_new, h)
        c = None if c is None else torch.where(live, c_new, c)
        ys[t] = torch.where(live, h_new, torch.zeros_like(h_new))
    return torch.stack(ys), h, c


def _directions(a, w, r, b, p, gates: int, defaults: list[str]) -> list[Direction]:
    n_dir, hidden = w.shape[0], r.shape[-1]
    expected = 2 if a.get("direction", "forward") == "bidirectional" else 1
    if n_dir != expected:
        raise HawqError(f"{a.op} direction {a.get('direction', 'forward')!r} needs {expected} weight set(s), got {n_dir}")
    if b is None:
        b = w.new_zeros(n_dir, 2 * gates * hidden)
    acts = activations(a, defaults, n_dir)
    return [Direction(w[i], r[i], b[i, :gates * hidden], b[i, gates * hidden:],
                      None if p is None else p[i], acts[i]) for i in range(n_dir)]


def recurrent(a: Attrs, cell, dirs: list[Direction], x, lens, h0, c0):
    """Shared driver: layouts, initial states, directions -> the requested outputs (Y, Y_h[, Y_c])."""
    layout = a.get("layout", 0)
    if layout:
        x = x.transpose(0, 1)
        h0 = None if h0 is None else h0.transpose(0, 1)
        c0 = None if c0 is None else c0.transpose(0, 1)
    hidden = dirs[0].r.shape[-1]
    zeros = x.new_zeros(len(dirs), x.shape[1], hidden)
    h0 = zeros if h0 is None else h0
    c0 = zeros if c0 is None and cell is lstm_cell else c0
    lens = None if lens is None else lens.long()
    reverse = [a.get("direction", "forward") == "reverse", True]
    outs = [run_direction(a, cell, d, x, h0[i], None if c0 is None else c0[i], lens, reverse[i])
            for i, d in enumerate(dirs)]
    y = torch.stack([o[0] for o in outs], dim=1)
    y_h = torch.stack([o[1] for o in outs])
    y_c = torch.stack([o[2] for o in outs]) if cell is lstm_cell else None
    if layout:
        y, y_h = y.permute(2, 0, 1, 3), y_h.transpose(0, 1)
        y_c = None if y_c is None else y_c.transpose(0, 1)
    return (y, y_h, y_c)[:max(a.n_outputs, 1)]


@op("LSTM")
def lstm(a: Attrs, x, w, r, b=None, lens=None, h0=None, c0=None, p=None):
    dirs = _directions(a, w, r, b, p, 4, ["Sigmoid", "Tanh", "Tanh"])
    return recurrent(a, lstm_cell, dirs, x, lens, h0, c0)


@op("GRU")
def gru(a: Attrs, x, w, r, b=None, lens=None, h0=None):
    dirs = _directions(a, w, r, b, None, 3, ["Sigmoid", "Tanh"])
    return recurrent(a, gru_cell, dirs, x, lens, h0, None)


@op("RNN")
def rnn(a: Attrs, x, w, r, b=None, lens=None, h0=None):
    dirs = _directions(a, w, r, b, None, 1, ["Tanh"])
    return recurrent(a, rnn_cell, dirs, x, lens, h0, None)
