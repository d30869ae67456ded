"""Chips as functions of standard-normal vectors: ``chip = f(z)``, ``z ~ N(0, I)``.

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

import numpy as np
from scipy import special

from reliability.devices.components import EmpiricalVariation
from reliability.errors import ModelSpecError

__all__ = ["LatentChips"]


class LatentChips:
    """The latent (standard-normal) parametrization of a :class:`~reliability.cim.ChipSimulator`.

    Periphery with drift compensation is not supported here (it needs a second read of the same
    chip); DAC/ADC are applied by the simulator's forward as usual.
    """

    def __init__(self, simulator):
        self.sim = simulator
        dev = simulator.device
        if simulator.spec.periphery.drift_compensation:
            raise ModelSpecError("tail estimation in latent space does not support drift_compensation yet; "
                                 "switch it off in [periphery] or use plain Monte Carlo.")
        self.device = dev
        self.dtype = simulator.dtype
        t = simulator.spec.time_s
        self.L = float(dev.drift.log_factor(t)) if dev.drift is not None else 0.0
        self.R = float(dev.read_noise.time_factor(t)) if dev.read_noise is not None else 0.0
        self.blocks: list[tuple[str, int, tuple]] = []   # (kind, layer index, shape)
        self._par = []
        for li, p in enumerate(simulator.prepared):
            shape = p.shape
            prog = dev.programming
            par = {"targets": p.targets.astype(self.dtype)}
            if prog is not None:
                self.blocks.append(("prog", li, shape))
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
            if dev.drift is not None and self.L > 0:
                self.blocks.append(("nu", li, shape))
                flat = par["targets"].ravel()
                par["nu_mean"] = dev.drift.nu_mean(flat).reshape(shape).astype(self.dtype)
                par["nu_std"] = dev.drift.nu_std(flat).reshape(shape).astype(self.dtype)
            if dev.read_noise is not None and self.R > 0:
                self.blocks.append(("read", li, shape))
                par["q"] = dev.read_noise.q(par["targets"].ravel().astype(np.float64)).reshape(shape).astype(self.dtype)
            if dev.stuck is not None and (dev.stuck.p_low > 0 or dev.stuck.p_high > 0):
                self.blocks.append(("stuck", li, shape))
            self._par.append(par)
        if dev.chip_gain is not None and dev.chip_gain.sigma > 0:
            self.blocks.append(("gain", -1, ()))
        self.dim = int(sum(int(np.prod(s)) for _, _, s in self.blocks))

    # ------------------------------------------------------------------ sampling in latent space
    def draw(self, rng: np.random.Generator, n: int) -> list[np.ndarray]:
        """``n`` independent chips' latent vectors (block list, chip axis first)."""
        from reliability.devices._fastrandom import standard_normal

        return [standard_normal(rng, (n,) + s, self.dtype) for _, _, s in self.blocks]

    def draw_chip(self, seed: int, i: int) -> list[np.ndarray]:
        """Chip ``i``'s latent vector from the ``i``-th child of ``SeedSequence(seed)``."""
        from reliability.cim.simulate import chip_rng

        return self.draw(chip_rng(seed, i), 1)

    @staticmethod
    def stack(parts: list[list[np.ndarray]]) -> list[np.ndarray]:
        return [np.concatenate(p, axis=0) for p in zip(*parts)]

    @staticmethod
    def take(z: list[np.ndarray], idx) -> list[np.ndarray]:
        return [b[idx] for b in z]

    def pcn(self, z: list[np.ndarray], rho, rng: np.random.Generator) -> list[np.ndarray]:
        """Preconditioned Crank-Nicolson proposal ``sqrt(1 - rho^2) z + rho xi`` (exact for N(0, I));
        ``rho`` scalar or one value per chip."""
        from reliability.devices._fastrandom import standard_normal

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
        dt = self.dtype
        by = {}
        for (kind, li, _), b in zip(self.blocks, z):
            by[(kind, li)] = b
        gain = None
        if ("gain", -1) in by:
            gain = np.exp(dt.type(self.device.chip_gain.sigma) * by[("gain", -1)])
        dev = self.device
        out, levels = [], []
        for li, (m, par) in enumerate(zip(self.sim.maps, self._par)):
            T = par["targets"]
            zp = by.get(("prog", li))
            if zp is None:
                g = np.broadcast_to(T, (S,) + T.shape).astype(dt)
            elif "emp" in par:
                u = special.ndtr(zp.astype(np.float64)).reshape(S, -1)
                g = np.stack([par["emp"].ppf(u[s], par["flat_targets"]) for s in range(S)]).reshape((S,) + T.shape).astype(dt)
            else:
                fam = par["fam"]
                if fam.name in ("normal", "lognormal"):
                    x = zp * par["scale"]                       # new array in the working dtype
                else:
                    x = fam.ppf(special.ndtr(zp.astype(np.float64)), *par["shape"]).astype(dt) * par["scale"]
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
            if ("nu", li) in by:
                nu = par["nu_mean"] + par["nu_std"] * by[("nu", li)]
                if dev.drift.fold:
                    np.abs(nu, out=nu)
                nu *= dt.type(-self.L)
                g *= np.exp(nu, out=nu)
            if ("read", li) in by:
                g = g + np.abs(g) * par["q"] * dt.type(np.sqrt(self.R)) * by[("read", li)]
            if ("stuck", li) in by:
                st = dev.stuck
                u = special.ndtr(by[("stuck", li)].astype(np.float64))
                spread_z = zp if zp is not None else dt.type(0.0)
                low = u < st.p_low
                high = (~low) & (u < st.p_low + st.p_high)
                g = np.where(low, dt.type(st.g_low) + dt.type(st.spread_low) * spread_z, g)
                g = np.where(high, dt.type(st.g_high) + dt.type(st.spread_high) * spread_z, g)
                if dev.floor is not None:
                    np.maximum(g, dt.type(dev.floor), out=g)
            if gain is not None:
                g = g * gain.reshape((S,) + (1,) * T.ndim)
            g = g.astype(dt, copy=False)
            out.append(m.decode(g).astype(dt, copy=False))
            if with_levels:
                levels.append(m.slice_levels(g).astype(dt, copy=False))
        return (out, levels) if with_levels else out


def _compact(a: np.ndarray, dtype) -> np.ndarray:
    """A parameter array in ``dtype``, as a scalar when it is constant."""
    a = np.asarray(a, dtype=dtype)
    if a.size and np.all(a == a.flat[0]):
        return dtype.type(a.flat[0]) if hasattr(dtype, "type") else np.dtype(dtype).type(a.flat[0])
    return a
