"""Many chips of one device array, fast: a device model's per-device parameters evaluated once at
fixed targets, then one chip at a time drawn with only random numbers and arithmetic.

:meth:`DeviceModel.sample_chips` evaluates the state functions (splines, polynomials) at every
call; a simulator drawing thousands of chips of the same crossbar would spend most of its time
there.  :class:`PreparedArray` does that work once.  A chip's draws come from the generator it is
given and nothing else, in a fixed order, so chip ``i`` is reproducible from its own generator
whatever the chunking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reliability.devices import batched as _batched
from reliability.devices import fastrandom as _fr
from reliability.devices.fastrandom import standard_normal
from reliability.devices.components import EmpiricalVariation
from reliability.devices.model import DeviceModel
from reliability.devices.verify import Acceptance
from reliability.streams import as_generator

__all__ = ["PreparedArray", "ProgrammedChip"]


@dataclass
class ProgrammedChip:
    """One chip after programming: programmed conductance, drift exponents, stuck mask, gain."""

    g0: np.ndarray
    nu: np.ndarray | None
    stuck_mask: np.ndarray | None
    stuck_value: np.ndarray | None
    gain: float


class PreparedArray:
    """A device model at fixed targets (any shape), ready to program and read many chips.

    Parameters
    ----------
    model : DeviceModel
    targets : array_like
        Target values in the model's unit (conductance in uS, ``w_max`` or ``level`` units).
    dtype : numpy dtype, default float32
        Precision of the drawn values.
    accept : Acceptance, optional
        Write-verify of some or all devices (:mod:`reliability.devices.verify`): their programming
        variable is truncated to the band, from the same random numbers.
    """

    def __init__(self, model: DeviceModel, targets, dtype=np.float32, accept: Acceptance | None = None):
        self.model = model
        self.accept = accept
        self.dtype = np.dtype(dtype)
        t = np.asarray(targets, dtype=float)
        self.shape = t.shape
        self.targets = t.astype(self.dtype)
        flat = t.ravel()
        p = model.programming
        self._kind = None
        if p is not None:
            if isinstance(p, EmpiricalVariation):
                self._kind = "empirical"
                self._emp = p
                self._flat_targets = flat
            else:
                fam = p.family_obj
                self._kind = "log" if fam.transform == "log" else "additive"
                self._fam = fam
                self._shape = p.shape_values()
                self._loc = p.loc(flat).astype(self.dtype).reshape(self.shape)
                self._scale = p.scale(flat).astype(self.dtype).reshape(self.shape)
                self._normal = fam.name in ("normal", "lognormal")
                # constant parts become scalars: fewer passes over the array per chip
                if np.all(self._loc == 0):
                    self._loc = None
                if self._scale.size and np.all(self._scale == self._scale.flat[0]):
                    self._scale = self.dtype.type(self._scale.flat[0])
        d = model.drift
        if d is not None:
            self._nu_mean = d.nu_mean(flat).astype(self.dtype).reshape(self.shape)
            self._nu_std = d.nu_std(flat).astype(self.dtype).reshape(self.shape)
        r = model.read_noise
        if r is not None:
            self._q = r.q(flat).astype(self.dtype).reshape(self.shape)
        self._fused = None         # flat float32 parameter arrays for sample_fused, built on first use
        self._batch = None         # the same for sample_batch
        self._qR: dict = {}        # read-time factor R -> q sqrt(R) (a dict: safe across threads)
        s = model.stuck
        self._stuck = s is not None and (s.p_low > 0 or s.p_high > 0)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def program(self, rng, out: np.ndarray | None = None) -> ProgrammedChip:
        """Draw one chip's programming (fixed order: gain, programming, drift, stuck).

        ``rng`` (int, SeedSequence or Generator, SPEC 7) is the chip's generator, positioned as in
        :meth:`DeviceModel.program`; ``out`` (shape of the targets, this dtype) receives the
        programmed values in place."""
        rng = as_generator(rng)
        m = self.model
        gain = float(np.exp(m.chip_gain.sigma * rng.standard_normal())) if m.chip_gain is not None else 1.0
        if self._kind is None:
            g0 = self.targets.copy() if out is None else np.copyto(out, self.targets) or out
        elif self._kind == "empirical":
            u = rng.random(self.size)
            if self.accept is not None:
                self.accept.apply_uniform(u)
            g0 = self._emp.ppf(u, self._flat_targets).reshape(self.shape).astype(self.dtype)
            if out is not None:
                out[...] = g0
                g0 = out
        else:
            if self._normal:
                z = standard_normal(rng, self.shape, self.dtype, out=out)
                if self.accept is not None:
                    self.accept.apply_normal(z)
            else:
                z = self._fam.rvs(rng, self.shape, *self._shape)
                if self.accept is not None:
                    u = self.accept.apply_uniform(self._fam.cdf(z, *self._shape))
                    z = self._fam.ppf(u, *self._shape)
                z = z.astype(self.dtype)
                if out is not None:
                    out[...] = z
                    z = out
            if self._kind == "log":
                z *= self._scale
                if self._loc is not None:
                    z += self._loc
                g0 = np.multiply(self.targets, np.exp(z, out=z), out=z)
            else:
                g0 = z
                g0 *= self._scale
                if self._loc is not None:
                    g0 += self._loc
                g0 += self.targets
        if m.floor is not None:
            np.maximum(g0, self.dtype.type(m.floor), out=g0)
        nu = None
        if m.drift is not None:
            nu = standard_normal(rng, self.shape, self.dtype)
            nu *= self._nu_std
            nu += self._nu_mean
            if m.drift.fold:
                np.abs(nu, out=nu)
        mask = value = None
        if self._stuck:
            s = m.stuck
            u = rng.random(self.shape, dtype=np.float32)
            low = u < s.p_low
            high = (u >= s.p_low) & (u < s.p_low + s.p_high)
            mask = low | high
            value = np.where(low, self.dtype.type(s.g_low), self.dtype.type(s.g_high)).astype(self.dtype)
            n_st = int(mask.sum())
            if n_st and (s.spread_low > 0 or s.spread_high > 0):
                spread = np.where(low[mask], s.spread_low, s.spread_high)
                value[mask] += (spread * rng.standard_normal(n_st)).astype(self.dtype)
        return ProgrammedChip(g0, nu, mask, value, gain)

    def read(self, chip: ProgrammedChip, time_s: float, rng) -> np.ndarray:
        """Read a programmed chip at ``time_s`` seconds after programming (fresh read noise).

        ``rng``: int, SeedSequence or Generator (SPEC 7), positioned as in :meth:`DeviceModel.read`.
        The result may share memory with ``chip.g0``; treat it as read-only."""
        rng = as_generator(rng)
        m = self.model
        g = chip.g0
        if m.drift is not None:
            L = float(m.drift.log_factor(time_s))
            if L > 0:
                f = np.multiply(chip.nu, self.dtype.type(-L))     # chip.nu is kept for later reads
                g = np.multiply(np.exp(f, out=f), g, out=f)
        if m.read_noise is not None:
            R = float(m.read_noise.time_factor(time_s))
            if R > 0:
                z = standard_normal(rng, self.shape, self.dtype)
                z *= self._q_at(R)
                # |g| = g when the floor keeps every conductance non-negative
                z *= g if (m.floor is not None and m.floor >= 0) else np.abs(g)
                if g is chip.g0:
                    g = g + z
                else:
                    g += z
        if chip.stuck_mask is not None:
            g = np.where(chip.stuck_mask, chip.stuck_value, g)
        if m.floor is not None:
            g = np.maximum(g, self.dtype.type(m.floor))
        if chip.gain != 1.0:
            g = g * self.dtype.type(chip.gain)
        return g  # may be chip.g0 itself when nothing changed since programming: do not modify in place

    # ------------------------------------------------------------------ fused one-pass chips
    def fused_ok(self, time_s: float) -> bool:
        """Whether :meth:`sample_fused` applies: float32, numba, additive normal programming
        without write-verify, drift and read noise both active at ``time_s``, no stuck-at faults,
        a non-negative floor."""
        m = self.model
        if not (_fr.HAVE_NUMBA and self.dtype == np.float32 and self._kind == "additive" and self._normal):
            return False
        if self.accept is not None:
            return False
        if m.drift is None or m.read_noise is None or self._stuck or m.floor is None or m.floor < 0:
            return False
        return float(m.drift.log_factor(time_s)) > 0 and float(m.read_noise.time_factor(time_s)) > 0

    def sample_fused(self, time_s: float, *, rng, out: np.ndarray | None = None) -> np.ndarray:
        """Program and read one chip in a single pass over the devices (see :meth:`fused_ok`).

        Draws from ``rng`` in the order :meth:`program` then :meth:`read` do (chip gain, then the
        keys of the programming, drift and read-noise normals), so the normals are those of
        ``read(program(rng), time_s, rng)``; the arithmetic differs only by rounding (an ``exp``
        polynomial within 2 float32 ulp, fused operation order).  ``rng``: int, SeedSequence or
        Generator (SPEC 7)."""
        rng = as_generator(rng)
        m = self.model
        gain = float(np.exp(m.chip_gain.sigma * rng.standard_normal())) if m.chip_gain is not None else 1.0
        k1, k2, k3 = _fr._key(rng), _fr._key(rng), _fr._key(rng)
        f = self._fused
        if f is None:
            flat = lambda a: np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype=np.float32), self.shape)).reshape(-1)
            T = self.targets if self._loc is None else self.targets + self._loc
            f = self._fused = (flat(T), flat(self._scale), flat(self._nu_mean), flat(self._nu_std))
        R = float(m.read_noise.time_factor(time_s))
        qR = np.ascontiguousarray(np.broadcast_to(self._q_at(R), self.shape)).reshape(-1)
        if out is None:
            out = np.empty(self.shape, dtype=np.float32)
        _fr._device32(k1, k2, k3, f[0], f[1], f[2], f[3], bool(m.drift.fold),
                      np.float32(-float(m.drift.log_factor(time_s))), qR, np.float32(m.floor), out.reshape(-1))
        if gain != 1.0:
            out *= np.float32(gain)
        return out

    # ------------------------------------------------------------------ blocks of chips
    def batch_keys(self, time_s: float) -> int | None:
        """How many generator keys one chip of this array consumes when :meth:`sample_batch` can
        draw it (the draws are all normal fills: no chip gain, stuck-at faults, write-verify,
        non-normal or log-normal programming, and drift only where the fused kernel applies or
        at a read time without drift), else None (draw chip by chip)."""
        m = self.model
        if not (_batched.HAVE_NUMBA and self.dtype == np.float32) or m.chip_gain is not None or self._stuck:
            return None
        if self.accept is not None or self._kind not in (None, "additive") or (self._kind and not self._normal):
            return None
        if self.fused_ok(time_s):
            return 3
        if m.drift is not None and float(m.drift.log_factor(time_s)) > 0:
            return None
        read = m.read_noise is not None and float(m.read_noise.time_factor(time_s)) > 0
        return int(self._kind is not None) + int(m.drift is not None) + int(read)

    def sample_batch(self, keys: np.ndarray, time_s: float, out: np.ndarray) -> np.ndarray:
        """Draw a block of chips: ``keys`` (S, :meth:`batch_keys`) uint64 from
        :func:`~reliability.devices.batched.chip_keys` (this array's keys, in the order the chip's
        generator gives them), ``out`` (S, *shape) float32 receives the conductances.  Each chip
        is bit-identical to :meth:`sample` (or :meth:`sample_fused`) on the chip's generator."""
        m = self.model
        S = keys.shape[0]
        flat_out = out.reshape(S, -1)
        fl = self._batch_arrays()
        if self.fused_ok(time_s):
            R = float(m.read_noise.time_factor(time_s))
            qR = np.ascontiguousarray(np.broadcast_to(self._q_at(R), self.shape)).reshape(-1)
            _batched._fused_chips(keys, 0, fl["T_loc"], fl["scale"], fl["nu_mean"], fl["nu_std"], bool(m.drift.fold),
                                  np.float32(-float(m.drift.log_factor(time_s))), qR, np.float32(m.floor), flat_out)
            return out
        k = 0
        kp = -1
        if self._kind is not None:
            kp, k = 0, 1
        if m.drift is not None:
            k += 1                    # the drift exponents' key: drawn, unused at a read without drift
        R = float(m.read_noise.time_factor(time_s)) if m.read_noise is not None else 0.0
        kr = k if R > 0 else -1
        qR = (np.ascontiguousarray(np.broadcast_to(self._q_at(R), self.shape)).reshape(-1) if R > 0
              else fl["zeros"])
        floor = m.floor
        _batched._program_chips(keys, kp, kr, fl["T"], fl["scale"], fl["loc"], self._kind is not None and
                                self._loc is not None, np.float32(0.0 if floor is None else floor), floor is not None,
                                qR, not (floor is not None and floor >= 0), flat_out)
        return out

    def _batch_arrays(self) -> dict:
        got = self._batch
        if got is None:
            flat = lambda a: np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype=np.float32), self.shape)).reshape(-1)
            zeros = np.zeros(self.size, dtype=np.float32)
            prog = self._kind is not None
            got = self._batch = {
                "T": flat(self.targets), "zeros": zeros,
                "scale": flat(self._scale) if prog else zeros,
                "loc": flat(self._loc) if prog and self._loc is not None else zeros,
                "T_loc": flat(self.targets if not prog or self._loc is None else self.targets + self._loc),
                "nu_mean": flat(self._nu_mean) if self.model.drift is not None else zeros,
                "nu_std": flat(self._nu_std) if self.model.drift is not None else zeros,
            }
        return got

    def _q_at(self, R: float) -> np.ndarray:
        got = self._qR.get(R)
        if got is None:
            if len(self._qR) > 8:
                self._qR.clear()
            got = self._qR[R] = self._q * self.dtype.type(np.sqrt(R))
        return got

    def sample(self, time_s: float = 0.0, *, rng=None) -> np.ndarray:
        """Program and read one chip at ``time_s`` seconds.

        ``rng``: None, int, SeedSequence or Generator (SPEC 7), keyword as in :meth:`DeviceModel.sample`."""
        rng = as_generator(rng)
        return self.read(self.program(rng), time_s, rng)
