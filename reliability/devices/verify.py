"""Write-verify: a device is reprogrammed until its programmed value lies within a band around
its target, so the accepted value follows the programming law *truncated* to the band.

The model is the retry scheme: each attempt is an independent draw of the programming variation,
the device is read back (verify) and accepted when ``|g0 - target| <= band``.  The accepted value
then follows exactly the programming distribution conditioned on the band, and the number of
attempts is geometric with mean ``1 / P(band)``.  Drift, read noise and the chip gain act after
programming, as without verify; a stuck device ignores programming and stays stuck.

Truncation is applied in the programming variable's probability space: a device whose latent
standard normal is ``z`` gets ``u = P(lo) + (P(hi) - P(lo)) Phi(z)`` and ``F^-1(u)``, so the map
from standard normals to chips keeps its dimension and its random streams.  A chip drawn with and
without write-verify from the same generator is the same chip (common random numbers), only its
programming errors are pulled into the band.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from reliability.devices.components import EmpiricalVariation
from reliability.errors import ModelSpecError

__all__ = ["Acceptance", "acceptance"]

#: Below this acceptance probability a band is refused: the expected attempts (1 / P) would
#: exceed a million per device.
MIN_ACCEPTANCE = 1e-6


@dataclass(frozen=True)
class Acceptance:
    """The accepted probability interval ``[u_lo, 1 - q_hi]`` of each verified device.

    Attributes
    ----------
    index : ndarray or None
        Flat indices (C order) of the verified devices in the device array; None: all of them.
    u_lo, q_hi : ndarray (float64)
        ``P(programming outcome below the band)`` and ``P(above the band)`` per verified device.
    shape : tuple
        Shape of the device array.
    """

    index: np.ndarray | None
    u_lo: np.ndarray
    q_hi: np.ndarray
    shape: tuple

    @property
    def probability(self) -> np.ndarray:
        """Acceptance probability of one attempt, per verified device."""
        return 1.0 - self.u_lo - self.q_hi

    @property
    def n_verified(self) -> int:
        return int(np.prod(self.shape)) if self.index is None else int(self.index.size)

    def expected_attempts(self) -> float:
        """Expected programming attempts summed over the verified devices (``sum 1 / P``)."""
        return float(np.sum(1.0 / self.probability))

    def _take(self, flat: np.ndarray) -> np.ndarray:
        return flat if self.index is None else flat[:, self.index]

    def _put(self, flat: np.ndarray, values: np.ndarray) -> None:
        if self.index is None:
            flat[...] = values
        else:
            flat[:, self.index] = values

    def apply_normal(self, z: np.ndarray) -> np.ndarray:
        """Map standard normals ``z`` (device shape, optionally with leading chip axes) to the
        standardized normal programming variable truncated to the band; in place, returns ``z``.

        Both tails are computed from their own side (``Phi(z)`` below the median, ``Phi(-z)``
        above) so that no precision is lost for large ``|z|``."""
        flat = z.reshape((-1, int(np.prod(self.shape))))
        x = self._take(flat).astype(np.float64)
        w = self.probability
        lo = self.u_lo + w * special.ndtr(x)
        hi = self.q_hi + w * special.ndtr(-x)
        out = np.where(lo < 0.5, special.ndtri(np.minimum(lo, 0.5)), -special.ndtri(np.minimum(hi, 0.5)))
        self._put(flat, out.astype(z.dtype))
        return z

    def apply_uniform(self, u: np.ndarray) -> np.ndarray:
        """Map uniforms ``u`` on (0, 1) (device shape, optional leading chip axes) into the band's
        probability interval; in place, returns ``u``."""
        flat = u.reshape((-1, int(np.prod(self.shape))))
        x = self._take(flat).astype(np.float64)
        self._put(flat, (self.u_lo + self.probability * x).astype(u.dtype))
        return u


def acceptance(programming, targets, band, floor=None, mask=None) -> Acceptance | None:
    """The write-verify acceptance of devices programmed to ``targets`` with a band of half-width
    ``band`` (model units, scalar or per device); None when no device is verified.

    ``mask`` (boolean, the targets' shape; None = all) selects the verified devices.  ``floor``
    is the model's floor: an outcome below it reads as the floor, which is accepted when the floor
    lies in the band.  Raises :class:`ModelSpecError` when a band cannot be met (a target below
    the floor's reach) or when its acceptance probability is below ``MIN_ACCEPTANCE``.
    """
    T = np.asarray(targets, dtype=np.float64)
    shape = T.shape
    if programming is None:
        raise ModelSpecError("write-verify needs a device model with programming variation (it has none: "
                             "every device lands on its target already).")
    if mask is not None:
        mask = np.broadcast_to(np.asarray(mask, dtype=bool), shape)
        if not mask.any():
            return None
        index = None if mask.all() else np.flatnonzero(mask.ravel())
    else:
        index = None
    Tf = T.ravel() if index is None else T.ravel()[index]
    B = np.broadcast_to(np.asarray(band, dtype=np.float64), shape).ravel()
    B = B if index is None else B[index]
    if np.any(~np.isfinite(B)) or np.any(B <= 0):
        raise ModelSpecError(f"write-verify band must be positive and finite; got {np.min(B)!r}.")
    low_open = np.zeros(Tf.shape, dtype=bool) if floor is None else (float(floor) >= Tf - B)
    if floor is not None and np.any(float(floor) > Tf + B):
        raise ModelSpecError(f"write-verify band of {float(np.min(B)):.4g} cannot be met for targets below "
                             f"{float(floor) - float(np.min(B)):.4g} (the floor is {float(floor)}): widen the band.")
    if isinstance(programming, EmpiricalVariation):
        with np.errstate(invalid="ignore"):
            u_lo = np.where(low_open, 0.0, programming.cdf(Tf - B, Tf))
            q_hi = 1.0 - programming.cdf(Tf + B, Tf)
    else:
        fam = programming.family_obj
        shp = programming.shape_values()
        loc = np.broadcast_to(programming.loc(Tf), Tf.shape)
        scale = np.broadcast_to(programming.scale(Tf), Tf.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            if fam.transform == "log":
                pos = Tf > 0
                a = np.where(pos & ~low_open, (np.log(np.maximum(Tf - B, 1e-300) / Tf) - loc) / scale, -np.inf)
                b = np.where(pos, (np.log((Tf + B) / Tf) - loc) / scale, np.inf)
            else:
                a = np.where(low_open, -np.inf, (-B - loc) / scale)
                b = (B - loc) / scale
        # no variation at a device: nothing to truncate
        a = np.where(scale > 0, a, -np.inf)
        b = np.where(scale > 0, b, np.inf)
        if fam.name in ("normal", "lognormal"):
            u_lo, q_hi = special.ndtr(a), special.ndtr(-b)
        else:
            u_lo = np.where(np.isfinite(a), np.exp(fam.logcdf(np.where(np.isfinite(a), a, 0.0), *shp)), 0.0)
            q_hi = np.where(np.isfinite(b), np.exp(fam.logsf(np.where(np.isfinite(b), b, 0.0), *shp)), 0.0)
    u_lo = np.asarray(u_lo, dtype=np.float64)
    q_hi = np.asarray(q_hi, dtype=np.float64)
    p = 1.0 - u_lo - q_hi
    if np.any(~(p >= MIN_ACCEPTANCE)):
        i = int(np.argmin(np.where(np.isfinite(p), p, -1.0)))
        raise ModelSpecError(f"write-verify band {float(B[i]):.4g} is too tight: a device at target {float(Tf[i]):.4g} "
                             f"lands in it with probability {float(p[i]):.3g} per attempt (below {MIN_ACCEPTANCE:g}); "
                             "widen the tolerance.")
    return Acceptance(index, u_lo, q_hi, shape)
