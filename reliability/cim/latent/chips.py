"""Chips as functions of standard-normal vectors: ``chip = f(z)``, ``z ~ N(0, I)`` (:class:`LatentChips`).

Tail estimators that move chips around (subset simulation with preconditioned Crank-Nicolson
moves, importance sampling with shifted proposals) need the chip's randomness in one Gaussian
space.  :class:`LatentChips` maps blocks of standard normals to each analog layer's effective
weights, exactly reproducing the device model's law:

- programming: ``g0 = target + loc + scale * F^-1(Phi(z))`` (``F`` the family; the identity for
  normal and log-normal); floor applied;
- drift exponent ``nu = |mean + std * z_nu|``; read noise ``|g| q sqrt(R(t)) z_read``;
- stuck-at: ``u = Phi(z_stuck)``; ``u < p_low`` stuck low, ``u < p_low + p_high`` stuck high,
  the stuck value's spread taken from ``z`` of the programming block (unused by a stuck device);
- chip gain ``exp(sigma * z_gain)``, one scalar per chip.

Blocks are kept as a list of arrays with a leading chip axis ``S``; the total dimension is
:attr:`LatentChips.dim`.
"""

from __future__ import annotations

import copy

import numpy as np
from scipy import special

from reliability.devices.batched import chip_keys, normal_rows
from reliability.devices.components import EmpiricalVariation
from reliability.streams import chip_rng

__all__ = ["LatentChips"]


class LatentChips:
    """The latent (standard-normal) parametrization of a :class:`~reliability.cim.ChipSimulator`.

    DAC/ADC are applied by the simulator's forward as usual.  With global drift compensation the
    chip is read twice, at the inference time and at the drift reference time (a ``read_ref``
    block of fresh read noise), and each layer's weights and slice levels are scaled by
    ``alpha = sum|colsum W_ref| / sum|colsum W|`` (an ADC's range scaled by ``1 / alpha`` and its
    output by ``alpha``, as the simulator does, quantizes ``alpha x`` levels at the full range: the
    same numbers).  The conductance view (gradient objectives) does not apply ``alpha``.
    """

    def __init__(self, simulator):
        self.sim = simulator
        dev = simulator.device
        self.compensate = bool(simulator.spec.periphery.drift_compensation)
        self.spares = int(getattr(simulator, "spares", 0))
        self.device = dev
        self.dtype = simulator.dtype
        self._maps = simulator.maps      # decodes conductances to weights (identity in a conductance view)
        self.n_posterior = int(getattr(simulator, "n_posterior", 0) or 0)
        self._par_cache: dict = {}
        self._par, self.L, self.R = self._parameters(dev, simulator.prepared)
        t_ref = simulator.t_ref
        self.R_ref = float(dev.read_noise.time_factor(t_ref)) if dev.read_noise is not None else 0.0
        self.blocks: list[tuple[str, int, tuple]] = []   # (kind, layer index, shape)
        for li, p in enumerate(simulator.prepared):
            shape = p.shape
            if dev.programming is not None:
                self.blocks.append(("prog", li, shape))
            if dev.drift is not None and self.L > 0:
                self.blocks.append(("nu", li, shape))
            if dev.read_noise is not None and self.R > 0:
                self.blocks.append(("read", li, shape))
            if self.compensate and dev.read_noise is not None and self.R_ref > 0:
                self.blocks.append(("read_ref", li, shape))
            if dev.stuck is not None and (dev.stuck.p_low > 0 or dev.stuck.p_high > 0):
                self.blocks.append(("stuck", li, shape))
            if self.spares:       # the spare devices that may replace the chip's worst columns
                kinds = [k for k, l2, _ in self.blocks if l2 == li and k in ("prog", "nu", "read", "stuck")]
                self.blocks.extend((k + "_s", li, shape) for k in kinds)
        if dev.chip_gain is not None and dev.chip_gain.sigma > 0:
            self.blocks.append(("gain", -1, ()))
        if self.n_posterior:
            # the chip's posterior draw: j = floor(Phi(z) * n_draws), one coordinate per chip
            self.blocks.append(("posterior", -1, ()))
        self.dim = int(sum(int(np.prod(s)) for _, _, s in self.blocks))

    def _parameters(self, dev, prepared):
        """Per-layer parameter arrays of device model ``dev`` at the simulator's targets (its
        ``prepared`` arrays, which also carry the write-verify acceptance), and the drift and
        read-noise time factors at the inference time."""
        t = self.sim.spec.time_s
        L = float(dev.drift.log_factor(t)) if dev.drift is not None else 0.0
        R = float(dev.read_noise.time_factor(t)) if dev.read_noise is not None else 0.0
        pars = []
        for p in prepared:
            shape = p.shape
            prog = dev.programming
            par = {"targets": p.targets.astype(self.dtype), "device": dev, "accept": p.accept}
            if prog is not None:
                if isinstance(prog, EmpiricalVariation):
                    par["emp"] = prog
                    par["flat_targets"] = p.targets.ravel().astype(np.float64)
                else:
                    fam = prog.family_obj
                    flat = par["targets"].ravel()
                    par["fam"] = fam
                    par["shape"] = prog.shape_values()
                    par["loc"] = _compact(prog.loc(flat).reshape(shape), self.dtype)
                    par["scale"] = _compact(prog.scale(flat).reshape(shape), self.dtype)
            if dev.drift is not None and L > 0:
                flat = par["targets"].ravel()
                par["nu_mean"] = dev.drift.nu_mean(flat).reshape(shape).astype(self.dtype)
                par["nu_std"] = dev.drift.nu_std(flat).reshape(shape).astype(self.dtype)
            if dev.read_noise is not None:
                par["q"] = dev.read_noise.q(par["targets"].ravel().astype(np.float64)).reshape(shape).astype(self.dtype)
            pars.append(par)
        return pars, L, R

    def conductance_view(self, dtype=np.float64) -> "LatentChips":
        """A view of these chips whose :meth:`weights` returns each analog layer's device
        conductances ``(S, r, slices, signs, K, N)`` in ``dtype`` instead of effective weights.

        The view shares the nominal per-layer parameters (computed in this object's dtype) and keeps
        its own cache of posterior-draw parameters, so parameters in ``dtype`` never leak into this
        object's cache.  Nothing here is modified."""
        view = copy.copy(self)
        view.compensate = False
        view._maps = [_IdentityDecode()] * len(self._maps)
        view.dtype = np.dtype(dtype)
        view._par_cache = {}
        return view

    def scale(self, layer: int):
        """The programming variation family's scale parameter for analog layer ``layer`` at the
        nominal device model, per device (an array of the device shape, or a scalar when constant);
        1.0 when there is none (no programming variation, or an empirical one)."""
        return self._par[layer].get("scale", 1.0)

    def parameters_for(self, j: int):
        """Per-layer parameters of posterior draw ``j`` (cached, a few at a time)."""
        got = self._par_cache.get(j)
        if got is None:
            if len(self._par_cache) >= 8:
                self._par_cache.pop(next(iter(self._par_cache)))
            got = self._par_cache[j] = self._parameters(self.device.model_at(j), self.sim.prepared_for(j))
        return got

    def posterior_index(self, z_post: np.ndarray) -> np.ndarray:
        """Posterior draw index of each chip from its latent coordinate: ``floor(Phi(z) n_draws)``."""
        u = special.ndtr(np.asarray(z_post, dtype=np.float64))
        return np.minimum((u * self.n_posterior).astype(np.int64), self.n_posterior - 1)

    # ------------------------------------------------------------------ sampling in latent space
    def draw(self, rng: np.random.Generator, n: int) -> list[np.ndarray]:
        """``n`` independent chips' latent vectors (block list, chip axis first)."""
        from reliability.devices.fastrandom import standard_normal

        return [standard_normal(rng, (n,) + s, self.dtype) for _, _, s in self.blocks]

    def draw_chip(self, seed: int, i: int) -> list[np.ndarray]:
        """Chip ``i``'s latent vector from the ``i``-th child of ``SeedSequence(seed)``."""
        return self.draw(chip_rng(seed, i), 1)

    def draw_chips(self, seed: int, chips) -> list[np.ndarray]:
        """The latent vectors of chips ``chips`` (block list, chip axis first): row ``s`` is
        ``draw_chip(seed, chips[s])``, drawn without building each chip's generator."""
        chips = np.asarray(chips, dtype=np.int64).reshape(-1)
        keys = chip_keys(seed, chips, len(self.blocks))
        return [normal_rows(keys[:, b], np.empty((chips.size,) + s, self.dtype)) for b, (_, _, s) in enumerate(self.blocks)]

    @staticmethod
    def stack(parts: list[list[np.ndarray]]) -> list[np.ndarray]:
        return [np.concatenate(p, axis=0) for p in zip(*parts)]

    @staticmethod
    def take(z: list[np.ndarray], idx) -> list[np.ndarray]:
        return [b[idx] for b in z]

    def pcn(self, z: list[np.ndarray], rho, rng: np.random.Generator) -> list[np.ndarray]:
        """Preconditioned Crank-Nicolson proposal ``sqrt(1 - rho^2) z + rho xi`` (exact for N(0, I));
        ``rho`` scalar or one value per chip."""
        from reliability.devices.fastrandom import standard_normal

        rho = np.asarray(rho, dtype=np.float64)
        out = []
        for b in z:
            r = rho.reshape((-1,) + (1,) * (b.ndim - 1)) if rho.ndim else rho
            xi = standard_normal(rng, b.shape, self.dtype)
            xi *= np.asarray(r, dtype=self.dtype)
            xi += np.asarray(np.sqrt(1 - r * r), dtype=self.dtype) * b
            out.append(xi)
        return out

    # ------------------------------------------------------------------ latent -> weights
    def weights(self, z: list[np.ndarray], with_levels: bool = False):
        """Effective weights per analog layer, ``(S, K, N)``, for the chips in ``z``; with
        ``with_levels`` also the slice levels each layer's ADC needs, ``(S, slices, K, N)``."""
        S = z[0].shape[0] if z else 1
        by = {}
        for (kind, li, _), b in zip(self.blocks, z):
            by[(kind, li)] = b
        if not self.n_posterior:
            return self._weights(by, S, self._par, self.L, self.R, with_levels)
        # chips grouped by posterior draw, each group with its own parameters
        j = self.posterior_index(by[("posterior", -1)]).reshape(S)
        out = levels = None
        for jj in np.unique(j):
            idx = np.flatnonzero(j == jj)
            sub = {k: v[idx] for k, v in by.items()}
            par, L, R = self.parameters_for(int(jj))
            got = self._weights(sub, idx.size, par, L, R, with_levels)
            w, lv = got if with_levels else (got, None)
            if out is None:
                out = [np.empty((S,) + a.shape[1:], dtype=a.dtype) for a in w]
                levels = [np.empty((S,) + a.shape[1:], dtype=a.dtype) for a in lv] if with_levels else None
            for o, a in zip(out, w):
                o[idx] = a
            if with_levels:
                for o, a in zip(levels, lv):
                    o[idx] = a
        return (out, levels) if with_levels else out

    def _weights(self, by: dict, S: int, pars: list, L: float, R: float, with_levels: bool):
        dt = self.dtype
        dev = pars[0]["device"] if pars else self.device
        gain = None
        if ("gain", -1) in by and dev.chip_gain is not None:
            gain = np.exp(dt.type(dev.chip_gain.sigma) * by[("gain", -1)])
        out, levels = [], []
        for li, (m, par) in enumerate(zip(self._maps, pars)):
            T = par["targets"]
            g, g_prog, zp, stuck = self._devices(by, li, par, dev, L, R, S, gain, "")
            if self.spares:
                g_spare = self._devices(by, li, par, dev, L, R, S, gain, "_s")[0]
                g = self.sim.maps[li].remap_spares(g, stuck if stuck is not None else np.zeros(g.shape, dtype=bool), g_spare,
                                   self.spares)
            g = g.astype(dt, copy=False)
            W = m.decode(g).astype(dt, copy=False)
            lv = m.slice_levels(g).astype(dt, copy=False) if with_levels else None
            if self.compensate:
                # the reference read: no drift yet (t_ref = t0), fresh read noise, same stuck devices and gain
                gr = g_prog
                if ("read_ref", li) in by:
                    gr = gr + np.abs(gr) * par["q"] * dt.type(np.sqrt(self.R_ref)) * by[("read_ref", li)]
                    if dev.floor is not None:
                        np.maximum(gr, dt.type(dev.floor), out=gr)
                gr = self._stuck_and_gain(gr, by.get(("stuck", li)), zp, dev, gain, S, T)[0]
                W_ref = m.decode(gr.astype(dt, copy=False))
                num = np.abs(W_ref.sum(axis=1)).sum(axis=1)
                den = np.abs(W.sum(axis=1)).sum(axis=1)
                alpha = np.where(den > 0, num / np.where(den > 0, den, 1), 1.0).astype(dt)
                W = W * alpha[:, None, None]
                if lv is not None:
                    lv = lv * alpha.reshape((S,) + (1,) * (lv.ndim - 1))
            out.append(W)
            if with_levels:
                levels.append(lv)
        return (out, levels) if with_levels else out

    def _devices(self, by, li, par, dev, L, R, S, gain, sfx):
        """Layer ``li``'s conductances from the blocks of kind suffix ``sfx`` (``""``: the chip's own
        devices; ``"_s"``: its spare devices): ``(g, g_prog, zp, stuck)`` with ``g_prog`` the
        programmed values before drift (for drift compensation) and ``stuck`` the stuck mask."""
        dt = self.dtype
        T = par["targets"]
        zp = by.get(("prog" + sfx, li))
        if zp is None:
            g = np.broadcast_to(T, (S,) + T.shape).astype(dt)
        elif "emp" in par:
            u = special.ndtr(zp.astype(np.float64)).reshape(S, -1)
            if par["accept"] is not None:
                par["accept"].apply_uniform(u)
            g = np.stack([par["emp"].ppf(u[s], par["flat_targets"]) for s in range(S)]).reshape((S,) + T.shape).astype(dt)
        else:
            fam = par["fam"]
            acc = par["accept"]
            if fam.name in ("normal", "lognormal"):
                # a stuck device's spread below reads the raw zp: keep it
                zv = zp if acc is None else acc.apply_normal(zp.copy())
                x = zv * par["scale"]                       # new array in the working dtype
            elif acc is None:
                x = fam.ppf_of_normal(zp.astype(np.float64), *par["shape"]).astype(dt) * par["scale"]
            else:
                u = special.ndtr(zp.astype(np.float64))
                acc.apply_uniform(u)
                x = fam.ppf(u, *par["shape"]).astype(dt) * par["scale"]
            if not (np.ndim(par["loc"]) == 0 and par["loc"] == 0):
                x += par["loc"]
            if fam.transform == "log":
                g = np.exp(x, out=x)
                g *= T
            else:
                g = x
                g += T
        if dev.floor is not None:
            np.maximum(g, dt.type(dev.floor), out=g)
        g_prog = g.copy() if self.compensate else None
        if ("nu" + sfx, li) in by:
            nu = par["nu_mean"] + par["nu_std"] * by[("nu" + sfx, li)]
            if dev.drift.fold:
                np.abs(nu, out=nu)
            nu *= dt.type(-L)
            g *= np.exp(nu, out=nu)
        if ("read" + sfx, li) in by:
            g = g + np.abs(g) * par["q"] * dt.type(np.sqrt(R)) * by[("read" + sfx, li)]
            if dev.floor is not None:       # as DeviceModel.read: the floor holds after read noise
                np.maximum(g, dt.type(dev.floor), out=g)
        g, stuck = self._stuck_and_gain(g, by.get(("stuck" + sfx, li)), zp, dev, gain, S, T)
        return g, g_prog, zp, stuck

    @staticmethod
    def _stuck_and_gain(g, z_stuck, zp, dev, gain, S, T):
        """Stuck devices and the chip gain applied to ``g``: ``(g, stuck mask or None)``."""
        dt = g.dtype
        stuck = None
        if z_stuck is not None:
            st = dev.stuck
            u = special.ndtr(z_stuck.astype(np.float64))
            spread_z = zp if zp is not None else dt.type(0.0)
            low = u < st.p_low
            high = (~low) & (u < st.p_low + st.p_high)
            g = np.where(low, dt.type(st.g_low) + dt.type(st.spread_low) * spread_z, g)
            g = np.where(high, dt.type(st.g_high) + dt.type(st.spread_high) * spread_z, g)
            if dev.floor is not None:
                np.maximum(g, dt.type(dev.floor), out=g)
            stuck = low | high
        if gain is not None:
            g = g * gain.reshape((S,) + (1,) * T.ndim)
        return g, stuck


class _IdentityDecode:
    """A stand-in layer mapping whose decode is the identity (see :meth:`LatentChips.conductance_view`)."""

    @staticmethod
    def decode(g):
        return g

    @staticmethod
    def slice_levels(g):
        return g


def _compact(a: np.ndarray, dtype) -> np.ndarray:
    """A parameter array in ``dtype``, as a scalar when it is constant."""
    a = np.asarray(a, dtype=dtype)
    if a.size and np.all(a == a.flat[0]):
        return dtype.type(a.flat[0]) if hasattr(dtype, "type") else np.dtype(dtype).type(a.flat[0])
    return a
