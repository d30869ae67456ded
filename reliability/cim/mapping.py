"""Weights to conductances and back: quantization, bit slicing, differential or offset mapping,
replicas, and the tile periphery (DAC, per-column ADC, global drift compensation).

For one analog layer with clean weight matrix ``W`` (K x N, ``y = x @ W``), :class:`LayerMapping`
computes every device's target (in the device model's unit) and the *linear* decode that turns a
chip's drawn conductances back into an effective weight matrix::

    W_eff = sum over replica r, slice i, sign s of  c[i, s] * g[r, i, s]  +  offset

so noiseless conductances decode to exactly the quantized weights (the mapping round trip), and
the gradient of anything with respect to a device's conductance is ``c[i, s] * dL/dW_eff``.

Device-model units: ``w_max`` models (the weight-level Gaussian of Yan et al.) act on ``W / max|W|``
directly, one "device" per weight; ``level`` models act on device levels 0 .. 2^m - 1; ``uS``
models on conductances in [g_min, g_max].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reliability.cim.spec import MappingSpec, PeripherySpec
from reliability.devices import DeviceModel
from reliability.errors import ModelSpecError

__all__ = ["LayerMapping", "quantize_uniform"]


def quantize_uniform(x, full_scale, bits):
    """Signed uniform quantizer with ``2^(bits-1) - 1`` steps each side of 0 over ``[-full_scale, full_scale]``.

    Values beyond full scale saturate (as a DAC or ADC does); returns ``(quantized, n_saturated)``.
    """
    steps = 2 ** (bits - 1) - 1
    fs = np.asarray(full_scale, dtype=x.dtype)
    lsb = fs / steps
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.rint(x / lsb)
    q = np.nan_to_num(q, nan=0.0)
    sat = int(np.count_nonzero(np.abs(q) > steps))
    np.clip(q, -steps, steps, out=q)
    return q * lsb, sat


@dataclass
class LayerMapping:
    """Device targets and decode coefficients of one analog layer (see the module docstring)."""

    layer: object
    device: DeviceModel
    spec: MappingSpec

    def __post_init__(self):
        W = np.asarray(self.layer.weight, dtype=float)
        if not np.all(np.isfinite(W)):
            raise ModelSpecError(f"layer {self.layer.name}: weights contain NaN or inf.")
        K, N = W.shape
        sp = self.spec
        self.K, self.N = K, N
        unit = self.device.unit
        if unit == "w_max":
            if sp.device_bits:
                raise ModelSpecError("a weight-level device model (unit w_max) has no devices to slice over; "
                                     "set mapping.device_bits = 0.")
            m = float(self.layer.layer_max_abs) or 1.0
            Wq = self._quantize(W)[0] if sp.weight_bits else W
            self.kind = "weight"
            r = sp.devices_per_weight                            # replicas of the weight, averaged
            self.targets = np.broadcast_to((Wq / m)[None, None, None], (r, 1, 1, K, N)).copy()   # (r, slices, signs, K, N)
            self.coef = np.full((1, 1), m)                       # (slices, signs)
            self.offset = np.zeros((1, N))
            self.levels = 1.0
            self.g_min, self.g_max = 0.0, 1.0
            self.col_scale = np.full(N, m)
            self.Wq = Wq
            self.sig = np.ones(1)
            self.signs = np.ones(1)
            return
        lo, hi = self._range()
        self.g_min, self.g_max = lo, hi
        scale = self._scale(W)                                   # (N,) per column (per-layer: constant)
        r = sp.devices_per_weight
        if sp.weight_bits == 0:
            a = W / scale
            qmax = 1.0
            if sp.scheme == "differential":
                vals = np.stack([np.maximum(a, 0), np.maximum(-a, 0)])[None]   # (slices=1, signs=2, K, N)
                self.signs = np.array([1.0, -1.0])
                self.offset_code = 0.0
            else:
                vals = ((a + 1) / 2)[None, None]
                self.signs = np.array([2.0])
                self.offset_code = 1.0
            L = 1.0
            sig = np.ones(1)
        else:
            q, qmax = self._quantize(W, scale=scale, return_codes=True)
            if sp.scheme == "differential":
                mags = [np.where(q > 0, q, 0), np.where(q < 0, -q, 0)]
                nbits = sp.weight_bits - 1
                self.signs = np.array([1.0, -1.0])
                self.offset_code = 0.0
            else:
                mags = [q + qmax]
                nbits = sp.weight_bits
                self.signs = np.array([1.0])
                self.offset_code = float(qmax)
            if sp.device_bits:
                m = sp.device_bits
                n_sl = -(-nbits // m)
                L = float(2 ** m - 1)
                sig = 2.0 ** (m * np.arange(n_sl))
                vals = np.stack([np.stack([(v >> (m * i)) & int(L) for v in mags]) for i in range(n_sl)]).astype(float)
            else:
                L = float(2 * qmax if sp.scheme == "offset" else qmax)
                sig = np.ones(1)
                vals = np.stack(mags)[None].astype(float)
        self.kind = "device"
        self.levels = L
        self.sig = sig
        g = lo + vals / L * (hi - lo)                                   # (slices, signs, K, N)
        self.targets = np.broadcast_to(g, (r,) + g.shape).copy()
        # W_eff[k, n] = col_scale[n] / qmax * (sum_i sig_i * sum_s sign_s * mean_r v[r,i,s] - offset_code)
        self.col_scale = scale / qmax
        self.coef = (sig[:, None] * self.signs[None, :]) * (L / (hi - lo)) / r     # per (slice, sign), x col_scale
        self.coef_lo = lo
        self.Wq = self.decode(self.targets[None])[0]

    # ------------------------------------------------------------------ helpers
    def _range(self):
        sp, dev = self.spec, self.device
        lo = sp.g_min_uS if sp.g_min_uS != "model" else (dev.g_range[0] if dev.g_range else None)
        hi = sp.g_max_uS if sp.g_max_uS != "model" else (dev.g_range[1] if dev.g_range else None)
        if lo is None or hi is None:
            raise ModelSpecError(f"device model {dev.name!r} has no g_range; set mapping.g_min_uS and mapping.g_max_uS.")
        if not (hi > lo):
            raise ModelSpecError(f"mapping conductance range must have g_max > g_min; got [{lo}, {hi}].")
        return float(lo), float(hi)

    def _scale(self, W):
        if self.spec.scale == "per-column":
            s = np.max(np.abs(W), axis=0)
        else:
            s = np.full(W.shape[1], np.max(np.abs(W)))
        return np.where(s > 0, s, 1.0)

    def _quantize(self, W, scale=None, return_codes=False):
        bits = self.spec.weight_bits
        qmax = 2 ** (bits - 1) - 1
        scale = self._scale(W) if scale is None else scale
        q = np.rint(W / scale * qmax).astype(np.int64)
        if return_codes:
            return q, qmax
        return q * scale / qmax, qmax

    @property
    def n_devices(self) -> int:
        return int(self.targets.size)

    # ------------------------------------------------------------------ decode (linear)
    def decode(self, g, out=None):
        """Effective weights from conductances ``g`` of shape (S, r, slices, signs, K, N) -> (S, K, N)
        (written into ``out`` when given: an (S, K, N) array of ``g``'s dtype)."""
        dt = g.dtype.type
        if self.kind == "weight":
            v = g[:, 0, 0, 0] if g.shape[1] == 1 else g[:, :, 0, 0].mean(axis=1)
            return np.multiply(v, dt(self.coef[0, 0]), out=out)
        v = g[:, 0] if g.shape[1] == 1 else g.mean(axis=1)                  # (S, slices, signs, K, N)
        c = (self.coef * self.spec.devices_per_weight).astype(g.dtype)
        # code = sum_ij c_ij (v_ij - g_min) - offset: the g_min terms sum to a constant
        if v.shape[1] * v.shape[2] == 2:          # one slice, a pair: no einsum, one order on every path
            a, b = v.reshape((v.shape[0], 2) + v.shape[3:])[:, 0], v.reshape((v.shape[0], 2) + v.shape[3:])[:, 1]
            cc = c.reshape(-1)
            code = np.multiply(a, cc[0], out=out)
            code += b * cc[1]
        else:
            code = np.einsum("sijkn,ij->skn", v, c, optimize=True, out=out)
        const = dt(self.offset_code + self.coef_lo * c.sum())
        if const:
            code -= const
        code *= self.col_scale.astype(g.dtype)
        return code

    def remap_spares(self, g, stuck, g_spare, spares: int):
        """Stuck-cell repair by spare columns: per chip and tile, the (at most) ``spares`` weight
        columns with the most stuck devices in that tile (ties: the lower column first; only columns
        with a stuck device) take all their devices in the tile from ``g_spare`` (fresh devices
        programmed to the same targets).  ``g``, ``g_spare``: (S, r, slices, signs, K, N);
        ``stuck``: boolean, broadcastable to ``g``.  Returns a new array."""
        S, K, N = g.shape[0], self.K, self.N
        stuck = np.broadcast_to(stuck, g.shape)
        out = g.copy()
        n = min(int(spares), N)
        rows = self.spec.tile_rows
        for k0 in range(0, K, rows):
            k1 = min(K, k0 + rows)
            cnt = stuck[..., k0:k1, :].sum(axis=(1, 2, 3, 4))                    # (S, N)
            order = np.argsort(-cnt, axis=1, kind="stable")[:, :n]
            use = np.zeros((S, N), dtype=bool)
            np.put_along_axis(use, order, np.take_along_axis(cnt, order, axis=1) > 0, axis=1)
            sel = use[:, None, None, None, None, :]
            out[..., k0:k1, :] = np.where(sel, g_spare[..., k0:k1, :], out[..., k0:k1, :])
        return out

    def spare_devices(self, spares: int) -> int:
        """Devices of the spare columns of this layer's tiles (a spare weight column holds all the
        devices of a weight column: replicas, slices and signs)."""
        per_row = int(np.prod(self.targets.shape[:3]))
        return int(min(int(spares), self.N) * per_row * self.K)

    def slice_levels(self, g):
        """Per-slice signed level matrices (S, slices, K, N) for tile-level (ADC) products:
        ``sum_s sign_s * mean_r (g - g_min) / (g_max - g_min) * L``."""
        if self.kind == "weight":
            return g[:, 0, 0] if g.shape[1] == 1 else g.mean(axis=1)[:, 0]
        v = (g.mean(axis=1) - self.coef_lo) * (self.levels / (self.g_max - self.g_min))
        return np.einsum("sijkn,j->sikn", v, self.signs, optimize=True)

    def grad_conductance(self, grad_w):
        """dL/dg (S, r, slices, signs, K, N) from dL/dW_eff (S, K, N): the decode is linear."""
        if self.kind == "weight":
            r = self.targets.shape[0]
            out = (grad_w * (self.coef[0, 0] / r))[:, None, None, None]
            return out if r == 1 else np.broadcast_to(out, (out.shape[0], r) + out.shape[2:])
        c = self.coef[:, :, None] * self.col_scale[None, None, :]               # (slices, signs, N)
        out = grad_w[:, None, None, :, :] * c[None, :, :, None, :]
        r = self.spec.devices_per_weight
        return np.broadcast_to(out[:, None], (out.shape[0], r) + out.shape[1:])


class Periphery:
    """DAC/ADC behaviour of all layers of a chip, calibrated once on clean inputs."""

    def __init__(self, spec: PeripherySpec, mappings: list[LayerMapping], tile_rows: int):
        self.spec = spec
        self.maps = mappings
        self.tile_rows = tile_rows
        self.x_range = [None] * len(mappings)
        self.adc_range = [None] * len(mappings)
        self.saturated = {"dac": 0, "adc": 0, "dac_total": 0, "adc_total": 0}

    @property
    def active(self) -> bool:
        return bool(self.spec.dac_bits or self.spec.adc_bits)

    def calibrate(self, layer_inputs: list[np.ndarray]):
        """Ranges from the inputs each analog layer received in a clean forward pass."""
        for i, (m, X) in enumerate(zip(self.maps, layer_inputs)):
            X = X.reshape(-1, X.shape[-1])
            if self.spec.dac_bits:
                dr = self.spec.dac_range
                self.x_range[i] = float(np.max(np.abs(X))) if dr == "calibrate" else float(dr)
                if self.x_range[i] == 0:
                    self.x_range[i] = 1.0
            if self.spec.adc_bits:
                Xq = self._dac(i, X.astype(np.float64))
                D = m.slice_levels(m.targets[None].astype(np.float64))[0]           # (slices, K, N)
                ranges = []
                for k0 in range(0, m.K, self.tile_rows):
                    k1 = min(k0 + self.tile_rows, m.K)
                    P = np.einsum("mk,ikn->imn", Xq[:, k0:k1], D[:, k0:k1, :], optimize=True)  # (slices, M, N)
                    if self.spec.adc_range == "max":
                        xr = self.x_range[i] if self.x_range[i] else float(np.max(np.abs(Xq)))
                        full = np.full((D.shape[0], m.N), xr * (k1 - k0) * m.levels)
                    elif self.spec.adc_range == "calibrate":
                        full = np.max(np.abs(P), axis=1)
                    else:
                        full = np.percentile(np.abs(P), self.spec.adc_percentile, axis=1)
                    ranges.append(np.where(full > 0, full, 1.0))
                self.adc_range[i] = np.stack(ranges)                                 # (tiles, slices, N)

    def _dac(self, i, X):
        if not self.spec.dac_bits:
            return X
        Xq, sat = quantize_uniform(X, self.x_range[i], self.spec.dac_bits)
        self.saturated["dac"] += sat
        self.saturated["dac_total"] += X.size
        return Xq

    def matmul(self, i, X, W, D=None, alpha=None):
        """The analog product of layer ``i`` for inputs ``X`` (S|1, M, K) with the chip's effective
        weights ``W`` (S, K, N), or tile by tile through the ADC using slice levels ``D``."""
        X = self._dac(i, X)
        if not self.spec.adc_bits:
            return np.matmul(X, W)
        m = self.maps[i]
        S = D.shape[0]
        Y = None
        for t, k0 in enumerate(range(0, m.K, self.tile_rows)):
            k1 = min(k0 + self.tile_rows, m.K)
            P = np.matmul(X[:, None, :, k0:k1], D[:, :, k0:k1, :])                  # (S, slices, M, N)
            full = self.adc_range[i][t][None, :, None, :]
            if alpha is not None:
                full = full / alpha[:, None, None, None]
            Pq, sat = quantize_uniform(P, full.astype(P.dtype), self.spec.adc_bits)
            self.saturated["adc"] += sat
            self.saturated["adc_total"] += P.size
            part = np.einsum("simn,i->smn", Pq, m.sig.astype(P.dtype), optimize=True)
            Y = part if Y is None else Y + part
        if m.kind == "weight":
            Y = Y * m.coef[0, 0]
        else:
            if m.offset_code:
                Y = Y - m.offset_code * X.sum(axis=-1, keepdims=True)
            Y = Y * m.col_scale.astype(Y.dtype)
        if alpha is not None:
            Y = Y * alpha[:, None, None]
        return Y if Y.shape[0] == S else np.broadcast_to(Y, (S,) + Y.shape[1:])
