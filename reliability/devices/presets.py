# size: a catalogue of independent presets, each a short function with its provenance (and its own imports of the model classes, so that listing the presets loads no SciPy); one module keeps the catalogue in one place.
"""Literature device presets: each a function returning a :class:`DeviceModel` with its source.

Every preset states where its numbers were read (a paper and figure/table, or the public simulator
file and the commit it was read from) in its docstring and in ``DeviceModel.source``, and the unit
of every parameter.  The implementations here are written from the published equations and
coefficients only; no code of the cited projects is reused.

Presets
-------
``pcm``              IBM aihwkit ``PCMLikeNoiseModel`` (Nandakumar et al. 2019; Joshi et al. 2020), uS
``rram``             Sandia CrossSim ``RRAMMilo`` (Milo et al., IRPS 2021, Fig. 4), uS
``rram-wan``         Sandia CrossSim ``RRAMWan`` (Wan et al., Nature 2022, Extended Data Fig. 3), uS
``sonos``            Sandia CrossSim ``SONOS`` (Agrawal et al., IEDM 2022, Figs. 10-11), uS at 0.1 V
``weight-gaussian``  weight-level Gaussian noise (Yan, Hu, Shi et al.), unit ``w_max``
``multi-device``     N-bit weights on N/m m-bit devices, level-independent sigma, unit ``level``
``rram1`` ``fefet2`` ``rram4`` ``fefet6``
                     2-bit devices whose inner levels (1, 2) vary s = 1, 2, 4, 6 times more than the
                     outer levels (0, 3) (Qin, Yan, ..., Hu, Shi, NeFT), unit ``level``

Use :func:`get_preset` (Python) or :func:`load_device` (strings, as on the command line).
"""

from __future__ import annotations

import inspect
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from reliability.errors import ModelSpecError

if TYPE_CHECKING:
    from reliability.devices.model import DeviceModel

__all__ = ["PRESETS", "preset_names", "get_preset", "load_device", "parse_spec",
           "pcm", "rram", "rram_wan", "sonos", "weight_gaussian", "multi_device",
           "rram1", "fefet2", "rram4", "fefet6", "sonos_coefficients", "sonos_sigma_us"]

# --------------------------------------------------------------------------------------------------
# Provenance constants (public repositories and the exact commits the numbers were read from)
# --------------------------------------------------------------------------------------------------
AIHWKIT_FILE = "IBM/aihwkit src/aihwkit/inference/noise/pcm.py @ 1384c5646e0cd9b1aebdcb4604fa28fed07e3c80"
CROSSSIM_COMMIT = "0a2eb1eda183326ef4d98d792995c721105d3726"  # sandialabs/cross-sim, release 3.2.0 (2026-04-03)
CROSSSIM_MILO = f"sandialabs/cross-sim simulator/devices/custom/RRAM_Milo.py @ {CROSSSIM_COMMIT}"
CROSSSIM_WAN = f"sandialabs/cross-sim simulator/devices/custom/RRAM_Wan.py @ {CROSSSIM_COMMIT}"
CROSSSIM_SONOS = f"sandialabs/cross-sim simulator/devices/custom/SONOS.py @ {CROSSSIM_COMMIT}"
CROSSSIM_PARAMS = f"sandialabs/cross-sim simulator/parameters/xbar_parameters.py @ {CROSSSIM_COMMIT}"
NEFT_COMMIT = "c86c8adad7600bfb0d51ee485ec0e037dd6af7a5"  # YifanQin-ND/NF_Training (2025-02-05)
NEFT_NOISE = f"YifanQin-ND/NF_Training src/generate_noise.py @ {NEFT_COMMIT}"
NEFT_CONFIG = f"YifanQin-ND/NF_Training config.py @ {NEFT_COMMIT}"

_YAN_PAPERS = (
    "Z. Yan, X. S. Hu, Y. Shi, 'On the Reliability of Computing-in-Memory Accelerators for Deep Neural "
    "Networks', arXiv:2205.13018 (2022); Z. Yan, X. S. Hu, Y. Shi, 'SWIM: Selective Write-Verify for "
    "Computing-in-Memory Neural Accelerators', DAC 2022 (arXiv:2202.08395); Z. Yan, D.-C. Juan, X. S. Hu, "
    "Y. Shi, 'Uncertainty Modeling of Emerging Device based Computing-in-Memory Neural Accelerators with "
    "Application to Neural Architecture Search', ASP-DAC 2021"
)
_NEFT_PAPER = (
    "Y. Qin, Z. Yan, D. Gan, J. Xia, Z. Pan, W. Wen, X. S. Hu, Y. Shi, 'NeFT: Negative Feedback Training to "
    "Improve Robustness of Compute-In-Memory DNN Accelerators', IEEE TCAD 2025, doi:10.1109/TCAD.2025.3591409 "
    "(arXiv:2305.14561)"
)


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------
def _finite_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ModelSpecError(f"{name} must be a number; got {value!r}.") from None
    ok = v >= 0 if allow_zero else v > 0
    if not (math.isfinite(v) and ok):
        raise ModelSpecError(f"{name} must be {'non-negative' if allow_zero else 'positive'} and finite; got {value!r}.")
    return v


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or int(value) != value or value < 1:
        raise ModelSpecError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


def _kinked_knots(base: np.ndarray, kinks: list[float], upper: float) -> np.ndarray:
    """Knots ``base`` plus each kink of a clipped function and two knots hugging it (relative 1e-3).

    PCHIP sets the slope to zero at a knot between a sloped and a flat piece; hugging the kink keeps
    that flattening inside an interval 0.1 % wide, so the spline follows the closed form closely.
    """
    k = np.asarray(kinks, dtype=float)
    knots = np.concatenate([[0.0], base, k, k * (1 - 1e-3), k * (1 + 1e-3)])
    knots = knots[(knots >= 0) & (knots <= upper)]
    return np.unique(knots)


# --------------------------------------------------------------------------------------------------
# 1. PCM (IBM aihwkit PCMLikeNoiseModel)
# --------------------------------------------------------------------------------------------------
#: aihwkit programming-noise polynomial, uS, in powers of g_T / g_max, fitted for g_max = 25 uS.
PCM_PROG_COEFF = (0.26348, 1.9650, -1.1731)
PCM_PROG_G_MAX_REF_US = 25.0
#: aihwkit drift exponent: mean = clip(a*ln(g_T/g_max) + b, lo, hi), std likewise (dimensionless).
PCM_NU_MEAN = (-0.0155, 0.0244, 0.049, 0.1)
PCM_NU_STD = (-0.0125, -0.0059, 0.008, 0.045)
#: aihwkit read noise: Q_s = min(c / max((g/g_max)^e, floor), cap) (dimensionless).
PCM_Q = (0.0088, 0.65, 1e-3, 0.2)
_AIHWKIT_ZERO_CLIP = 1e-7


def _pcm_nu_mean(x):
    a, b, lo, hi = PCM_NU_MEAN
    x = np.maximum(np.abs(np.asarray(x, dtype=float)), _AIHWKIT_ZERO_CLIP)
    return np.clip(a * np.log(x) + b, lo, hi)


def _pcm_nu_std(x):
    a, b, lo, hi = PCM_NU_STD
    x = np.maximum(np.abs(np.asarray(x, dtype=float)), _AIHWKIT_ZERO_CLIP)
    return np.clip(a * np.log(x) + b, lo, hi)


def _pcm_q(x):
    c, e, floor, cap = PCM_Q
    x = np.abs(np.asarray(x, dtype=float))
    return np.minimum(c / np.maximum(x ** e, floor), cap)


def pcm(g_max: float = 25.0, t0_s: float = 20.0, t_read_s: float = 250e-9, prog_noise_scale: float = 1.0,
        drift_scale: float = 1.0, read_noise_scale: float = 1.0, n_knots: int = 40) -> DeviceModel:
    r"""Phase-change memory as in IBM aihwkit's ``PCMLikeNoiseModel``.

    Source
    ------
    Numbers read from ``IBM/aihwkit``, file ``src/aihwkit/inference/noise/pcm.py``, commit
    ``1384c5646e0cd9b1aebdcb4604fa28fed07e3c80`` (class ``PCMLikeNoiseModel``), which implements the
    statistical PCM model of S. R. Nandakumar et al., ICECS 2019
    (https://ieeexplore.ieee.org/abstract/document/8964852), used in V. Joshi et al., "Accurate deep
    neural network inference using computational phase-change memory", Nat. Commun. 11, 2473 (2020).

    Model (conductances in uS, times in s)
    -----
    * Programming: ``g0 = g_T + sigma_p(g_T) z``, ``sigma_p = max(0, 0.26348 + 1.9650 x - 1.1731 x^2)``
      uS with ``x = g_T / g_max``, for g_max = 25 uS; for another ``g_max`` aihwkit scales the
      polynomial by ``g_max / 25`` (its ``prog_coeff_g_max_reference``), as done here.  Stored as
      ``Polynomial(coefficients * g_max/25, x_scale=g_max, lower=0)``; exact.
    * Drift: ``g(t) = g0 (t / t0)^(-nu)`` for ``t > t0 = 20 s``; ``nu = |mu + s z|`` per device with
      ``mu = clip(-0.0155 ln x + 0.0244, 0.049, 0.1)`` and ``s = clip(-0.0125 ln x - 0.0059, 0.008, 0.045)``
      (dimensionless; ``x`` clipped at 1e-7 as in aihwkit).  Both are stored as PCHIP ``Spline`` s of
      the target through ``n_knots`` knots log-spaced over (0.01 .. 1) g_max, plus 0 and the clip
      points; they match the closed forms to better than 0.1 % on [0.01, 1] g_max (tested to 1 %).
    * Read noise: ``g += |g| Q_s sqrt(ln((t + t_read) / (2 t_read))) z`` fresh per read,
      ``Q_s = min(0.0088 / max(x^0.65, 1e-3), 0.2)`` (dimensionless), ``t_read = 250 ns``; stored as a
      ``Spline`` of the target (same knots, plus the cap point), same accuracy.
    * Conductances floored at 0 uS after programming and after reading (aihwkit clamps both).

    Time convention: aihwkit counts ``t_inference`` from ``t0`` and uses ``t = t_inference + t0`` in
    both the drift and the read-noise formulas; here ``time_s`` is the time since programming with
    drift ``(t/t0)^-nu`` for ``t > t0``, so ``time_s = t_inference + t0`` reproduces aihwkit exactly
    (``time_s = 20`` is aihwkit's ``t_inference = 0``).

    Differences from aihwkit (stated, not hidden): aihwkit evaluates ``Q_s`` at the *programmed*
    conductance ``|g_prog|``; the state functions here are functions of the *target*, so ``Q_s`` is
    evaluated at ``g_T`` (``sigma_p`` and ``nu`` use ``g_T`` in aihwkit too).  aihwkit's conductance
    converter (weight -> conductance pair) belongs to the mapping layer, not to this device model.

    Parameters
    ----------
    g_max : float
        Maximal conductance, uS (aihwkit default 25 uS).
    t0_s : float
        Drift reference time (first read after programming), s.
    t_read_s : float
        Read-noise integration time parameter of the 1/f fit, s.
    prog_noise_scale, drift_scale, read_noise_scale : float
        Dimensionless multipliers of sigma_p, nu and Q_s (aihwkit's knobs of the same names; 1 = fit).
    n_knots : int
        Number of log-spaced spline knots over (0.01 .. 1) g_max (clip points are added).
    """
    from reliability.devices.components import Drift, ProgrammingVariation, ReadNoise
    from reliability.devices.model import DeviceModel
    from reliability.devices.state import Polynomial, Spline
    g_max = _finite_positive("pcm: g_max (uS)", g_max)
    t0_s = _finite_positive("pcm: t0_s (s)", t0_s)
    t_read_s = _finite_positive("pcm: t_read_s (s)", t_read_s)
    prog_noise_scale = _finite_positive("pcm: prog_noise_scale", prog_noise_scale, allow_zero=True)
    drift_scale = _finite_positive("pcm: drift_scale", drift_scale, allow_zero=True)
    read_noise_scale = _finite_positive("pcm: read_noise_scale", read_noise_scale, allow_zero=True)
    n_knots = _positive_int("pcm: n_knots", n_knots)
    if n_knots < 8:
        raise ModelSpecError(f"pcm: n_knots must be at least 8 for a 1 % spline approximation; got {n_knots}.")

    factor = g_max / PCM_PROG_G_MAX_REF_US * prog_noise_scale
    prog = ProgrammingVariation("normal", scale=Polynomial(tuple(c * factor for c in PCM_PROG_COEFF), x_scale=g_max, lower=0.0))

    base = np.logspace(-2, 0, n_knots)
    a, b, lo, hi = PCM_NU_MEAN
    mean_kinks = [math.exp((lo - b) / a), math.exp((hi - b) / a)]
    a, b, lo, hi = PCM_NU_STD
    std_kinks = [math.exp((lo - b) / a), math.exp((hi - b) / a)]
    c, e, floor, cap = PCM_Q
    q_kinks = [(c / cap) ** (1 / e)]
    xm = _kinked_knots(base, mean_kinks, 1.0)
    xs = _kinked_knots(base, std_kinks, 1.0)
    xq = _kinked_knots(base, q_kinks, 1.0)
    drift = Drift(
        nu_mean=Spline(tuple(xm * g_max), tuple(drift_scale * _pcm_nu_mean(xm))),
        nu_std=Spline(tuple(xs * g_max), tuple(drift_scale * _pcm_nu_std(xs))),
        t0_s=t0_s, fold=True,
    )
    read = ReadNoise(q=Spline(tuple(xq * g_max), tuple(read_noise_scale * _pcm_q(xq))), t_read_s=t_read_s)
    return DeviceModel(
        name="pcm", unit="uS", programming=prog, drift=drift, read_noise=read, g_range=(0.0, g_max), floor=0.0,
        description=(
            f"PCM (aihwkit PCMLikeNoiseModel): g_max={g_max:g} uS; programming sigma = max(0, 0.26348 + 1.9650x "
            f"- 1.1731x^2)*{g_max / 25:g} uS, x=g_T/g_max; drift (t/t0)^-nu, t0={t0_s:g} s, nu=|N(mu(x), s(x))| with "
            "mu=clip(-0.0155 ln x+0.0244, 0.049, 0.1), s=clip(-0.0125 ln x-0.0059, 0.008, 0.045); read noise "
            f"Q_s=min(0.0088/max(x^0.65,1e-3),0.2), t_read={t_read_s:g} s; time_s = aihwkit t_inference + t0."
        ),
        source=(f"{AIHWKIT_FILE} (PCMLikeNoiseModel); Nandakumar et al., ICECS 2019; "
                "Joshi et al., Nat. Commun. 11, 2473 (2020)"),
        metadata={"preset": "pcm", "parameters": {"g_max": g_max, "t0_s": t0_s, "t_read_s": t_read_s,
                                                  "prog_noise_scale": prog_noise_scale, "drift_scale": drift_scale,
                                                  "read_noise_scale": read_noise_scale, "n_knots": n_knots},
                  "units": {"g_max": "uS", "t0_s": "s", "t_read_s": "s"},
                  "notes": "Q_s evaluated at the target, aihwkit evaluates it at the programmed conductance."},
    )


# --------------------------------------------------------------------------------------------------
# 2. RRAM (Sandia CrossSim RRAMMilo and RRAMWan)
# --------------------------------------------------------------------------------------------------
#: CrossSim RRAMMilo: sigma_G = max(A*G + B, 0) uS, G in uS (linear fit to Milo et al. IRPS 2021, Fig. 4).
MILO_A, MILO_B = -0.009107, 4.782321
MILO_G_RANGE_US = (50.0, 225.0)
#: CrossSim RRAMWan: sigma_G = max(A G^3 + B G^2 + C G + D, 0) uS (cubic fit to Wan et al. 2022, ED Fig. 3).
WAN_ABCD = (1.536e-4, -1.167e-2, 2.374e-1, 1.053)
WAN_G_MAX_US = 39.26


def rram(g_min: float = 50.0, g_max: float = 225.0) -> DeviceModel:
    """Multilevel HfO2 RRAM programmed with IGVVA-100, as modelled by Sandia CrossSim's ``RRAMMilo``.

    Source
    ------
    ``sandialabs/cross-sim``, file ``simulator/devices/custom/RRAM_Milo.py``, commit
    ``0a2eb1eda183326ef4d98d792995c721105d3726`` (release 3.2.0; the same coefficients are in earlier
    commits 4907281, 601222e), a linear fit to Fig. 4 (IGVVA-100 algorithm) of V. Milo et al.,
    "Optimized programming algorithms for multilevel RRAM in hardware neural networks", IEEE IRPS 2021,
    https://ieeexplore.ieee.org/document/9405119.

    Model (conductances in uS)
    -----
    ``g0 = G + sigma(G) z`` with ``sigma(G) = max(-0.009107 G + 4.782321, 0)`` uS, G the target in uS
    (``Polynomial((4.782321, -0.009107), lower=0)``; exact).  CrossSim suggests an on/off ratio of 4.5,
    i.e. 50 .. 225 uS, and refuses ``G_max > 225 uS`` or ``G_min < 50 uS`` (the range of the measured
    data); the same limits are enforced here.  No drift or read noise is published in this model.
    Conductances floored at 0 uS (never reached in this range).

    Parameters
    ----------
    g_min, g_max : float
        Programmable range, uS; 50 <= g_min < g_max <= 225.
    """
    from reliability.devices.components import ProgrammingVariation
    from reliability.devices.model import DeviceModel
    from reliability.devices.state import Polynomial
    g_min = _finite_positive("rram: g_min (uS)", g_min)
    g_max = _finite_positive("rram: g_max (uS)", g_max)
    lo, hi = MILO_G_RANGE_US
    if not (lo - 1e-9 <= g_min < g_max <= hi + 1e-9):
        raise ModelSpecError(f"rram: need {lo:g} <= g_min < g_max <= {hi:g} uS (the range of the Milo et al. data "
                             f"used by CrossSim); got g_min={g_min!r}, g_max={g_max!r}.")
    prog = ProgrammingVariation("normal", scale=Polynomial((MILO_B, MILO_A), x_scale=1.0, lower=0.0))
    return DeviceModel(
        name="rram", unit="uS", programming=prog, g_range=(g_min, g_max), floor=0.0,
        description=(f"RRAM (Milo et al. IRPS 2021 via CrossSim RRAMMilo): programming sigma = max(-0.009107 G + "
                     f"4.782321, 0) uS, G in uS; range {g_min:g}..{g_max:g} uS; no drift/read-noise model."),
        source=f"{CROSSSIM_MILO} (RRAMMilo); Milo et al., IEEE IRPS 2021, Fig. 4 (IGVVA-100)",
        metadata={"preset": "rram", "parameters": {"g_min": g_min, "g_max": g_max}, "units": {"g_min": "uS", "g_max": "uS"}},
    )


def rram_wan(g_min: float = 0.0, g_max: float = WAN_G_MAX_US) -> DeviceModel:
    """NeuRRAM RRAM as modelled by Sandia CrossSim's ``RRAMWan`` (Wan et al., Nature 2022).

    Source
    ------
    ``sandialabs/cross-sim``, file ``simulator/devices/custom/RRAM_Wan.py``, commit
    ``0a2eb1eda183326ef4d98d792995c721105d3726`` (same coefficients at 601222e), a cubic fit to
    Extended Data Fig. 3 (t = 1 s data) of W. Wan et al., "A compute-in-memory chip based on
    resistive random-access memory", Nature 608, 504-512 (2022), doi:10.1038/s41586-022-04992-8.

    Model (conductances in uS)
    -----
    ``g0 = G + sigma(G) z`` with ``sigma(G) = max(1.536e-4 G^3 - 1.167e-2 G^2 + 0.2374 G + 1.053, 0)`` uS
    (exact ``Polynomial``).  CrossSim refuses ``G_max > 39.26 uS``; the default ``g_max`` is that limit.
    The file states no lower limit or suggested on/off ratio; the default ``g_min = 0`` is CrossSim's
    convention for an on/off ratio of 0 ("infinite"), not a measured value -- set it to your array's
    minimum conductance.  No drift or read noise is published in this model.

    Parameters
    ----------
    g_min, g_max : float
        Programmable range, uS; 0 <= g_min < g_max <= 39.26.
    """
    from reliability.devices.components import ProgrammingVariation
    from reliability.devices.model import DeviceModel
    from reliability.devices.state import Polynomial
    g_min = _finite_positive("rram-wan: g_min (uS)", g_min, allow_zero=True)
    g_max = _finite_positive("rram-wan: g_max (uS)", g_max)
    if not (g_min < g_max <= WAN_G_MAX_US + 1e-9):
        raise ModelSpecError(f"rram-wan: need 0 <= g_min < g_max <= {WAN_G_MAX_US} uS (CrossSim's validity limit "
                             f"for the Wan et al. fit); got g_min={g_min!r}, g_max={g_max!r}.")
    a, b, c, d = WAN_ABCD
    prog = ProgrammingVariation("normal", scale=Polynomial((d, c, b, a), x_scale=1.0, lower=0.0))
    return DeviceModel(
        name="rram-wan", unit="uS", programming=prog, g_range=(g_min, g_max), floor=0.0,
        description=(f"RRAM (Wan et al. Nature 2022 via CrossSim RRAMWan): programming sigma = max(1.536e-4 G^3 - "
                     f"1.167e-2 G^2 + 0.2374 G + 1.053, 0) uS; range {g_min:g}..{g_max:g} uS; no drift/read noise."),
        source=f"{CROSSSIM_WAN} (RRAMWan); Wan et al., Nature 608, 504 (2022), Extended Data Fig. 3 (t = 1 s)",
        metadata={"preset": "rram-wan", "parameters": {"g_min": g_min, "g_max": g_max},
                  "units": {"g_min": "uS", "g_max": "uS"}},
    )


# --------------------------------------------------------------------------------------------------
# 3. SONOS (Sandia CrossSim SONOS)
# --------------------------------------------------------------------------------------------------
#: Days at which CrossSim's SONOS coefficients were extracted.
SONOS_DAYS = (0, 1, 2, 3, 4, 5)
#: Mean-drift polynomial I_diff(I) = sum p_i I^i (I, I_diff in nA), one row per day (zero at day 0).
SONOS_DRIFT_POLY_NA = (
    (0.0,) * 11,
    (1.72684e-01, 5.72552e-02, -6.85715e-04, 3.50271e-06, -9.37682e-09, 1.40575e-11, -1.19803e-14,
     5.41293e-18, -8.85448e-22, -1.66869e-25, 5.95180e-29),
    (2.50712e-01, 6.62195e-02, -6.83218e-04, 2.99442e-06, -6.78255e-09, 7.70482e-12, -3.04983e-15,
     -2.15919e-18, 2.94617e-21, -1.23359e-24, 1.85329e-28),
    (-1.75300e-02, 9.76883e-02, -9.63791e-04, 4.55551e-06, -1.22391e-08, 1.93786e-11, -1.85899e-14,
     1.07659e-17, -3.58211e-21, 5.96785e-25, -3.30410e-29),
    (4.03338e-02, 1.03111e-01, -1.04740e-03, 4.83961e-06, -1.28132e-08, 1.99484e-11, -1.85139e-14,
     1.00008e-17, -2.84944e-21, 3.01008e-25, 1.18747e-29),
    (3.19927e-01, 1.06596e-01, -1.04054e-03, 4.50290e-06, -1.10352e-08, 1.56477e-11, -1.27592e-14,
     5.45513e-18, -7.26841e-22, -2.43893e-25, 7.14608e-29),
)
#: Variability sigma_I = max(A (1 - exp(-I/B)), 0): A in nA, B in nA, one pair per day.
SONOS_AB_NA = ((19.88665, 176.3115), (25.59102, 186.85544), (28.72753, 193.56834),
               (31.04318, 198.90332), (33.76214, 204.77023), (34.57909, 207.34309))
#: Read noise (per read, not time dependent) sigma_I = max(A (1 - exp(-I/B)), 0), nA.
SONOS_READ_AB_NA = (12.58037, 215.36557)
#: CrossSim default read voltage (xbar_parameters.py, DeviceParameters.Vread), V.
SONOS_V_READ = 0.1
_NA_PER_US = SONOS_V_READ * 1e3  # I[nA] = G[uS] * V[V] * 1e3


def sonos_coefficients(time_days: float) -> tuple[np.ndarray, float, float]:
    """CrossSim's SONOS drift polynomial (nA) and variability (A, B in nA) at ``time_days``.

    Coefficients are interpolated linearly between the measured days, as CrossSim does.
    """
    t = float(time_days)
    days = np.asarray(SONOS_DAYS, dtype=float)
    poly = np.asarray(SONOS_DRIFT_POLY_NA, dtype=float)
    p = np.array([np.interp(t, days, poly[:, i]) for i in range(poly.shape[1])])
    a = float(np.interp(t, days, [ab[0] for ab in SONOS_AB_NA]))
    b = float(np.interp(t, days, [ab[1] for ab in SONOS_AB_NA]))
    return p, a, b


def sonos(time_days: float = 0.0, g_max: float = 16.0, g_min: float | None = None, n_knots: int = 65) -> DeviceModel:
    """40 nm SONOS charge-trap memory in subthreshold, as modelled by Sandia CrossSim's ``SONOS``.

    Source
    ------
    ``sandialabs/cross-sim``, file ``simulator/devices/custom/SONOS.py``, commit
    ``0a2eb1eda183326ef4d98d792995c721105d3726`` (release 3.2.0), an empirical model of 128K measured
    devices from V. Agrawal, T. P. Xiao, C. H. Bennett, ..., S. Agarwal, "Subthreshold operation of SONOS
    analog memory to enable accurate low-power neural network inference", IEDM 2022, 21.7.1-21.7.4,
    https://ieeexplore.ieee.org/abstract/document/10019564 (Fig. 10(a): variability, Fig. 10(b): mean
    drift, Fig. 11(b): read noise).  See also T. P. Xiao et al., "An accurate, error-tolerant, and
    energy-efficient neural network inference engine based on SONOS analog memory", IEEE TCAS-I, 2022
    (no numbers were taken from it here).
    The default read voltage 0.1 V is from ``simulator/parameters/xbar_parameters.py`` (same commit).
    Note: commit 0a2eb1e changed the drift polynomials of days 1-5 relative to earlier commits
    (601222e, 4907281); the variability and read-noise numbers are unchanged.

    Model
    -----
    CrossSim works with cell currents ``I`` in nA; at its default read voltage 0.1 V, ``I[nA] = 100 G[uS]``
    (its docstring: 1600 nA <-> "~0 to 16 uS"), so this preset is in uS.  At ``time_days = t``:

    * mean after drift: ``I_d = I + P_t(I)`` with the 10th-degree polynomial ``P_t`` (nA) extracted at
      t = 1..5 days (``P_0 = 0``); stored as ``programming.loc`` =
      ``Polynomial(p_i / 100, x_scale=0.01)`` uS (``target / 0.01`` is the current in nA); exact.
    * variability: ``sigma_I = max(A_t (1 - exp(-I_d / B_t)), 0)`` nA, (A, B) = (19.88665, 176.3115) nA
      at t = 0 up to (34.57909, 207.34309) nA at 5 days; stored as ``programming.scale`` = a PCHIP
      ``Spline`` of the target (``n_knots`` knots over [0, g_max], within 1 % of the closed form).
    * coefficients between measured days are interpolated linearly, as CrossSim does; CrossSim
      extrapolates beyond 5 days (with a warning that it is not accurate) -- this preset refuses.
    * conductances floored at 0 (CrossSim clips currents at 0).

    Not represented (the model's components cannot express them): the time evolution itself -- this
    preset is a snapshot at ``time_days`` and has no power-law ``drift``, so the ``time_s`` given to
    ``sample``/``read`` has no effect; build one model per time instead -- and CrossSim's per-read
    noise ``sigma_I = max(12.58037 (1 - exp(-I / 215.36557)), 0)`` nA, which is time independent and
    absolute, unlike :class:`ReadNoise` (1/f, relative); its coefficients are kept in ``metadata``.

    Parameters
    ----------
    time_days : float
        Time since programming, days, in [0, 5].
    g_max : float
        Maximal conductance, uS (default 16 uS = CrossSim's 1600 nA at 0.1 V).  CrossSim requires
        ``I_max <= 3200 nA`` (32 uS), and ``I_max < 1800 nA`` (18 uS) when ``time_days > 0``.
    g_min : float or None
        Minimal conductance, uS; default ``g_max / 1e7`` (CrossSim's suggested on/off ratio 1e7).
    n_knots : int
        Knots of the variability spline (uniform over [0, g_max]).
    """
    from reliability.devices.components import ProgrammingVariation
    from reliability.devices.model import DeviceModel
    from reliability.devices.state import Polynomial, Spline
    try:
        t = float(time_days)
    except (TypeError, ValueError):
        raise ModelSpecError(f"sonos: time_days must be a number of days; got {time_days!r}.") from None
    if not (0.0 <= t <= 5.0):
        raise ModelSpecError(f"sonos: time_days must be in [0, 5] (the measured days); got {time_days!r}. "
                             "CrossSim extrapolates beyond 5 days but warns that it is not accurate.")
    g_max = _finite_positive("sonos: g_max (uS)", g_max)
    if g_max * _NA_PER_US > 3200 + 1e-9:
        raise ModelSpecError(f"sonos: g_max must be <= 32 uS (3200 nA at 0.1 V, CrossSim's limit); got {g_max!r}.")
    if t > 0 and g_max * _NA_PER_US >= 1800:
        raise ModelSpecError(f"sonos: with time_days > 0, g_max must be < 18 uS (1800 nA at 0.1 V, CrossSim's drift "
                             f"limit); got {g_max!r}.")
    g_min = g_max / 1e7 if g_min is None else _finite_positive("sonos: g_min (uS)", g_min, allow_zero=True)
    if not g_min < g_max:
        raise ModelSpecError(f"sonos: g_min must be < g_max; got g_min={g_min!r}, g_max={g_max!r}.")
    n_knots = _positive_int("sonos: n_knots", n_knots)
    if n_knots < 8:
        raise ModelSpecError(f"sonos: n_knots must be at least 8; got {n_knots}.")

    p, a_na, b_na = sonos_coefficients(t)
    loc = Polynomial(tuple(p / _NA_PER_US), x_scale=1.0 / _NA_PER_US)
    knots = np.linspace(0.0, g_max, n_knots)
    sigma = sonos_sigma_us(knots, t)
    prog = ProgrammingVariation("normal", loc=loc, scale=Spline(tuple(knots), tuple(sigma), lower=0.0))
    a_r, b_r = SONOS_READ_AB_NA
    return DeviceModel(
        name="sonos", unit="uS", programming=prog, g_range=(g_min, g_max), floor=0.0,
        description=(f"SONOS (Agrawal et al. IEDM 2022 via CrossSim SONOS) at {t:g} days after programming, 0.1 V read "
                     f"(100 nA per uS): mean shift P_t(I) (10th-degree polynomial, nA), sigma = max({a_na:.6g}(1 - "
                     f"exp(-I_d/{b_na:.6g})), 0) nA; per-read noise and time evolution not represented."),
        source=f"{CROSSSIM_SONOS} (SONOS); {CROSSSIM_PARAMS} (Vread = 0.1 V); Agrawal et al., IEDM 2022, 21.7, Figs. 10-11",
        metadata={"preset": "sonos",
                  "parameters": {"time_days": t, "g_max": g_max, "g_min": g_min, "n_knots": n_knots},
                  "units": {"time_days": "day", "g_max": "uS", "g_min": "uS"},
                  "v_read_V": SONOS_V_READ,
                  "variability_A_B_nA": [a_na, b_na],
                  "not_represented": {
                      "read_noise_sigma_nA": "max(A (1 - exp(-I/B)), 0), per read, time independent",
                      "read_noise_A_B_nA": [a_r, b_r],
                      "time_evolution": "snapshot at time_days; rebuild the preset for another time"}},
    )


def sonos_sigma_us(g_us, time_days: float = 0.0) -> np.ndarray:
    """Closed-form CrossSim SONOS variability sigma (uS) at target ``g_us`` (uS) and ``time_days``."""
    p, a_na, b_na = sonos_coefficients(time_days)
    i_na = np.asarray(g_us, dtype=float) * _NA_PER_US
    i_d = i_na + (np.polynomial.polynomial.polyval(i_na, p) if time_days > 0 else 0.0)
    return np.maximum(a_na * (1.0 - np.exp(-i_d / b_na)), 0.0) / _NA_PER_US


# --------------------------------------------------------------------------------------------------
# 4. Weight-level and level-based models (Yan, Hu, Shi and coauthors)
# --------------------------------------------------------------------------------------------------
def weight_gaussian(sigma: float = 0.1) -> DeviceModel:
    """Weight-level Gaussian variation: ``W' = W + N(0, (sigma * max|W_layer|)^2)``.

    Source
    ------
    The model used throughout the nvCiM reliability work of Z. Yan, X. S. Hu, Y. Shi and coauthors
    (arXiv:2205.13018; SWIM, DAC 2022; ASP-DAC 2021; NeFT, IEEE TCAD 2025): each weight of a layer is
    perturbed by additive Gaussian noise whose standard deviation is ``sigma`` times the largest
    absolute weight of that layer.  Read (as equations, not code) from the authors' public code
    ``YifanQin-ND/NF_Training``, ``src/generate_noise.py`` at commit
    ``c86c8adad7600bfb0d51ee485ec0e037dd6af7a5``: with one device per weight (WEIGHT_BIT = DEVICE_BIT)
    and s_rate = 1 its noise std is exactly ``variation * max|W|``.

    Units
    -----
    ``unit = "w_max"``: targets and values are weights divided by the layer's ``max|W|`` (in [-1, 1]);
    ``sigma`` is dimensionless (fraction of ``max|W|``).  The mapping layer interprets the unit
    ``w_max`` (it scales by each layer's max |W|); biases are kept exact.  No floor (weights are signed).

    Parameters
    ----------
    sigma : float
        Noise standard deviation as a fraction of the layer's max |W| (default 0.1, a typical value of
        the sweeps in these papers, not a measured value).
    """
    from reliability.devices.components import ProgrammingVariation
    from reliability.devices.model import DeviceModel
    from reliability.devices.state import Constant
    sigma = _finite_positive("weight-gaussian: sigma (fraction of max|W|)", sigma, allow_zero=True)
    return DeviceModel(
        name="weight-gaussian", unit="w_max", programming=ProgrammingVariation("normal", scale=Constant(sigma)),
        g_range=(-1.0, 1.0), floor=None,
        description=(f"weight-level Gaussian: W' = W + N(0, ({sigma:g} max|W_layer|)^2); unit w_max (weights / max|W| "
                     "of their layer), biases exact; applied by the mapping layer."),
        source=f"Yan, Hu, Shi et al.: {_YAN_PAPERS}; {_NEFT_PAPER}; equations read from {NEFT_NOISE}",
        metadata={"preset": "weight-gaussian", "parameters": {"sigma": sigma}, "units": {"sigma": "w_max"},
                  "biases": "exact"},
    )


def multi_device(weight_bits: int = 8, device_bits: int = 2, sigma: float = 0.1) -> DeviceModel:
    """Multi-level devices composing an N-bit weight from N/m m-bit devices, level-independent sigma.

    Source
    ------
    Z. Yan, X. S. Hu, Y. Shi and coauthors (arXiv:2205.13018; SWIM, DAC 2022; ASP-DAC 2021; NeFT,
    IEEE TCAD 2025).  An N-bit weight is stored on N/m devices of m bits each (2^m levels); device i
    holds the i-th m-bit digit with significance ``2^(i m)``; every device deviates from its level by
    ``N(0, sigma^2)`` independently.  The weight-level std is then
    ``sigma * sqrt(sum_i 4^(i m)) / (2^N - 1) * max|W|`` (~ ``sigma * sqrt(sum_{i=1}^{N/m} 2^(-2 i m))``,
    the form in the authors' code).  Defaults N = 8, m = 2 are ``WEIGHT_BIT``/``DEVICE_BIT`` of
    ``YifanQin-ND/NF_Training config.py`` (commit ``c86c8adad7600bfb0d51ee485ec0e037dd6af7a5``).

    Units
    -----
    ``unit = "level"``: targets are device levels 0 .. 2^m - 1 and ``sigma`` is in units of the level
    spacing.  ``metadata`` carries ``weight_bits`` and ``device_bits``; composing devices into weights
    (significance ``2^(i m)``) is the mapping layer's job.  No floor (the papers' noise is unclipped).

    Parameters
    ----------
    weight_bits : int
        N, bits per weight (a multiple of ``device_bits``).
    device_bits : int
        m, bits per device.
    sigma : float
        Device standard deviation in level spacings (default 0.1, a typical sweep value, not measured).
    """
    from reliability.devices.components import ProgrammingVariation
    from reliability.devices.model import DeviceModel
    from reliability.devices.state import Constant
    n = _positive_int("multi-device: weight_bits", weight_bits)
    m = _positive_int("multi-device: device_bits", device_bits)
    if n % m:
        raise ModelSpecError(f"multi-device: weight_bits must be a multiple of device_bits (N/m devices per weight); "
                             f"got weight_bits={n}, device_bits={m}.")
    if m > 16:
        raise ModelSpecError(f"multi-device: device_bits must be <= 16; got {m}.")
    sigma = _finite_positive("multi-device: sigma (level spacings)", sigma, allow_zero=True)
    top = 2 ** m - 1
    return DeviceModel(
        name="multi-device", unit="level", programming=ProgrammingVariation("normal", scale=Constant(sigma)),
        g_range=(0.0, float(top)), floor=None,
        description=(f"{n}-bit weights on {n // m} devices of {m} bits (levels 0..{top}); each device ~ N(level, "
                     f"{sigma:g}^2) in level spacings; device i has significance 2^({m}i)."),
        source=f"Yan, Hu, Shi et al.: {_YAN_PAPERS}; {_NEFT_PAPER}; defaults N=8, m=2 from {NEFT_CONFIG}",
        metadata={"preset": "multi-device", "weight_bits": n, "device_bits": m, "devices_per_weight": n // m,
                  "levels": list(range(top + 1)), "parameters": {"weight_bits": n, "device_bits": m, "sigma": sigma},
                  "units": {"sigma": "level spacing"}},
    )


#: NeFT's per-device-type factor s: levels 1 and 2 of a 2-bit device vary s times more than 0 and 3.
LEVEL_S_FACTOR = {"rram1": 1, "fefet2": 2, "rram4": 4, "fefet6": 6}
#: NeFT's weighting of the outer/inner levels in its normalization sigma / sqrt(0.4 s^2 + 0.6).
LEVEL_NORM_WEIGHTS = (0.6, 0.4)
_LEVEL_DISPLAY = {"rram1": "RRAM1", "fefet2": "FeFET2", "rram4": "RRAM4", "fefet6": "FeFET6"}


def _level_preset(kind: str, sigma: float, normalize: bool, weight_bits: int) -> DeviceModel:
    from reliability.devices.components import ProgrammingVariation
    from reliability.devices.model import DeviceModel
    from reliability.devices.state import Spline
    s = LEVEL_S_FACTOR[kind]
    sigma = _finite_positive(f"{kind}: sigma (level spacings)", sigma, allow_zero=True)
    if not isinstance(normalize, (bool, np.bool_)):
        raise ModelSpecError(f"{kind}: normalize must be true or false; got {normalize!r}.")
    n = _positive_int(f"{kind}: weight_bits", weight_bits)
    if n % 2:
        raise ModelSpecError(f"{kind}: weight_bits must be a multiple of the 2 device bits; got {n}.")
    w_out, w_in = LEVEL_NORM_WEIGHTS
    base = sigma / math.sqrt(w_in * s * s + w_out) if normalize else sigma
    levels = [0.0, 1.0, 2.0, 3.0]
    per_level = [base, s * base, s * base, base]
    name = kind
    return DeviceModel(
        name=name, unit="level",
        programming=ProgrammingVariation("normal", scale=Spline(tuple(levels), tuple(per_level))),
        g_range=(0.0, 3.0), floor=None,
        description=(f"{_LEVEL_DISPLAY[kind]} 2-bit device (levels 0..3): sigma per level = "
                     f"[{per_level[0]:.6g}, {per_level[1]:.6g}, {per_level[2]:.6g}, {per_level[3]:.6g}] level spacings "
                     f"(inner levels {s}x outer"
                     + (f"; normalized so that 0.6 s0^2 + 0.4 s1^2 = {sigma:g}^2)" if normalize else ")")),
        source=(f"{_NEFT_PAPER}; device types RRAM1/FeFET2/RRAM4/FeFET6 and s-factors read from {NEFT_CONFIG} "
                f"(s_factor) and the level model from {NEFT_NOISE} (var_list [1, s, s, 1], "
                "variation / sqrt(0.4 s^2 + 0.6)); Yan, Hu, Shi et al. (arXiv:2205.13018)"),
        metadata={"preset": kind, "device_bits": 2, "levels": [0, 1, 2, 3], "weight_bits": n,
                  "devices_per_weight": n // 2, "s_factor": s, "level_sigma": per_level,
                  "parameters": {"sigma": sigma, "normalize": bool(normalize), "weight_bits": n},
                  "units": {"sigma": "level spacing", "level_sigma": "level spacing"}},
    )


_LEVEL_DOC = """2-bit {upper} device of Qin, Yan, ..., Hu, Shi (NeFT): inner levels vary {s}x the outer levels.

    Source
    ------
    {neft}.  The device types RRAM1, FeFET2, RRAM4, FeFET6 and their factors s = 1, 2, 4, 6 are read
    from the authors' code ``YifanQin-ND/NF_Training``, ``config.py`` (``s_factor``), commit
    ``c86c8adad7600bfb0d51ee485ec0e037dd6af7a5``, and the level model from ``src/generate_noise.py``
    (same commit): a 2-bit device (levels 0..3) has standard deviations ``[1, s, s, 1] * sigma_0`` with
    ``sigma_0 = sigma / sqrt(0.4 s^2 + 0.6)``, so that ``0.6 sigma_0^2 + 0.4 (s sigma_0)^2 = sigma^2``
    (the authors' normalization, which weights the outer levels 0.6 and the inner levels 0.4); their
    default configuration uses 8-bit weights on 2-bit devices.  The per-level multipliers come from the
    code: the paper's tables of measured per-level values were not available to this implementation,
    so the absolute scale ``sigma`` is the swept parameter of the papers, not a measured value.
    (The authors' code applies the inner-level factor at weight level, to weights with
    0.25 < |W|/max|W| < 0.75; here it is applied per device level, as the device model describes.)

    Units
    -----
    ``unit = "level"`` (targets are levels 0..3, sigma in level spacings).  The programming scale is
    ``Spline(knots=[0, 1, 2, 3], values=per-level sigma)``, exact at the levels.  ``metadata`` holds
    ``device_bits = 2``, ``levels``, ``weight_bits`` and the per-level sigma.  No floor (unclipped noise).

    Parameters
    ----------
    sigma : float
        Device variation in level spacings (default 0.1, a typical sweep value, not measured): the RMS
        over levels with weights 0.6/0.4 when ``normalize`` (the authors' convention), else the sigma
        of levels 0 and 3.
    normalize : bool
        Apply the authors' ``1 / sqrt(0.4 s^2 + 0.6)`` normalization (default true).
    weight_bits : int
        Bits per weight for the mapping layer (default 8, as in the authors' ``config.py``).
    """


def rram1(sigma: float = 0.1, normalize: bool = True, weight_bits: int = 8) -> DeviceModel:
    return _level_preset("rram1", sigma, normalize, weight_bits)


def fefet2(sigma: float = 0.1, normalize: bool = True, weight_bits: int = 8) -> DeviceModel:
    return _level_preset("fefet2", sigma, normalize, weight_bits)


def rram4(sigma: float = 0.1, normalize: bool = True, weight_bits: int = 8) -> DeviceModel:
    return _level_preset("rram4", sigma, normalize, weight_bits)


def fefet6(sigma: float = 0.1, normalize: bool = True, weight_bits: int = 8) -> DeviceModel:
    return _level_preset("fefet6", sigma, normalize, weight_bits)


for _fn, _kind in ((rram1, "rram1"), (fefet2, "fefet2"), (rram4, "rram4"), (fefet6, "fefet6")):
    _fn.__doc__ = _LEVEL_DOC.format(upper=_LEVEL_DISPLAY[_kind], s=LEVEL_S_FACTOR[_kind], neft=_NEFT_PAPER)


# --------------------------------------------------------------------------------------------------
# Registry and loading
# --------------------------------------------------------------------------------------------------
PRESETS: dict[str, Callable[..., DeviceModel]] = {
    "pcm": pcm,
    "rram": rram,
    "rram-wan": rram_wan,
    "sonos": sonos,
    "weight-gaussian": weight_gaussian,
    "multi-device": multi_device,
    "rram1": rram1,
    "fefet2": fefet2,
    "rram4": rram4,
    "fefet6": fefet6,
}


def preset_names() -> list[str]:
    """Names of the available presets (lower case; lookup ignores case and treats ``_`` as ``-``)."""
    return sorted(PRESETS)


def _canonical(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _unknown_name_error(spec: str) -> ModelSpecError:
    return ModelSpecError(
        f"unknown device {spec!r}: it is neither a preset ({', '.join(preset_names())}) nor a path to a JSON "
        "device-model file (a path must end in .json). Preset parameters go after a colon, e.g. 'pcm:g_max=25'."
    )


def get_preset(name: str, **overrides: Any) -> DeviceModel:
    """Build preset ``name`` (case-insensitive) with keyword ``overrides`` of its parameters."""
    if not isinstance(name, str):
        raise ModelSpecError(f"a preset name must be a string; got {type(name).__name__}.")
    key = _canonical(name)
    if key not in PRESETS:
        raise ModelSpecError(f"unknown preset {name!r}; available presets: {', '.join(preset_names())}.")
    fn = PRESETS[key]
    params = list(inspect.signature(fn).parameters)
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise ModelSpecError(f"preset {key!r} has no parameter(s) {unknown}; its parameters are {params}.")
    return fn(**overrides)


def _parse_value(text: str) -> Any:
    t = text.strip()
    low = t.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``'name:key=value,key=value'`` into ``(name, {key: value})``.

    Values are read as booleans (true/false), ``none``, integers, floats (``1e-7``) or, failing
    those, strings.  Whitespace around names, keys and values is ignored.
    """
    name, sep, rest = spec.partition(":")
    params: dict[str, Any] = {}
    if sep and not rest.strip():
        raise ModelSpecError(f"device spec {spec!r} ends in a colon with no parameters; write them "
                             f"('{name.strip()}:key=value,...'; 'reliability device show {name.strip()}' lists them) "
                             "or drop the colon for the preset's defaults.")
    if sep and rest.strip():
        for item in rest.split(","):
            if not item.strip():
                continue
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ModelSpecError(
                    f"device spec {spec!r}: parameter {item.strip()!r} is not of the form key=value "
                    "(write e.g. 'pcm:g_max=25,drift_scale=0.5')."
                )
            key = key.strip()
            if key in params:
                raise ModelSpecError(f"device spec {spec!r}: parameter {key!r} is given twice.")
            params[key] = _parse_value(value)
    return name.strip(), params


def load_device(spec: Any) -> DeviceModel:
    """A :class:`DeviceModel` from a model, a preset name (with parameters) or a JSON file.

    Parameters
    ----------
    spec : DeviceModel, str or path-like
        * a :class:`DeviceModel`: returned as is;
        * a preset name, case-insensitive, ``_`` and ``-`` interchangeable (see :func:`preset_names`),
          optionally with parameters after a colon, comma separated:
          ``"pcm"``, ``"pcm:g_max=25"``, ``"sonos:time_days=2,g_max=12"``, ``"FeFET2:sigma=0.2"``;
          values are read as true/false, none, integers, floats or strings;
        * a path to a JSON device-model file written by :meth:`DeviceModel.save`; it must end in
          ``.json`` (a string ending in ``.json`` is always treated as a path).

    Raises
    ------
    ModelSpecError
        Unknown name (the message lists the presets and says a path must end in ``.json``), unknown
        preset parameter, bad parameter value, missing or malformed JSON file.
    """
    from reliability.devices.model import DeviceModel
    if isinstance(spec, DeviceModel):
        return spec
    if isinstance(spec, os.PathLike):
        path = Path(spec)
        if path.suffix.lower() != ".json":
            raise ModelSpecError(f"device model path {str(path)!r} must end in .json; presets are "
                                 f"{', '.join(preset_names())}.")
        return DeviceModel.load(path)
    if not isinstance(spec, str):
        raise ModelSpecError(f"a device must be a DeviceModel, a preset name or a .json path; got {type(spec).__name__}.")
    text = spec.strip()
    if not text:
        raise _unknown_name_error(spec)
    if text.lower().endswith(".json"):
        return DeviceModel.load(Path(text))
    name, params = parse_spec(text)
    if _canonical(name) not in PRESETS:
        raise _unknown_name_error(spec)
    return get_preset(name, **params)
