"""Standard-normal fills from a numpy ``Generator``, fast: a counter-based Box-Muller stream.

A device array of a chip needs millions of normals; numpy's ziggurat (about 5-9 ns a draw here)
would cost more than the chip's matrix products.  :func:`standard_normal` therefore takes a single
64-bit key from the caller's generator (so the generator always advances by the same amount,
whatever the size) and derives every value from a hash of (key, index), with no state carried
from one element to the next: the loop vectorizes (about 1 ns a float32 normal, 2 ns a float64
one, single-threaded, on an AVX-512 CPU).

The stream
----------
``key = rng.integers(0, 2**64, dtype=np.uint64)`` (one 64-bit draw; read with ``random_raw()``, the
same value, for bit generators with 64-bit output), ``K = mix(key)``, where ``mix``
is the SplitMix64 finaliser (a bijection of 64-bit words with full avalanche).  Pair ``j`` uses the
two words ``a = mix(K + 2j*G)`` and ``b = mix(K + (2j+1)*G)`` (``G = 0x9E3779B97F4A7C15``, wrapping
64-bit arithmetic), i.e. SplitMix64's sequence seeded by ``K``, and gives exact Box-Muller:

* radius uniform ``u = ((a >> 11) + 1) / 2**53`` in (0, 1] (53 bits), ``r = sqrt(-2 log u)``;
* angle: bits 0-51 of ``b`` give ``phi = (2 k + 1) pi / 2**55`` in (0, pi/4), bit 63 swaps
  (cos phi, sin phi) (reflection about pi/4) and bits 62, 61 are the signs of the two values, so
  the angle is uniform on a grid of 2**55 points of the circle (offset by half a step);
* ``out.flat[2j] = +-r cos``, ``out.flat[2j + 1] = +-r sin`` (swapped as said), C order.

So the first ``m`` values do not depend on the array's size, element ``i`` can be computed on its
own, and the largest possible ``|z|`` is ``sqrt(106 log 2) = 8.571674`` (``u = 2**-53``, angle next
to an axis; N(0, 1) has mass 1.0e-17 beyond it): radius and angle are quantized far below float32
(and float64 sampling) resolution, the radius tail beyond 8.57 (mass 2**-53) being lumped onto it.

Arithmetic: ``log``, ``sin``, ``cos`` are branch-free polynomials made of +, -, *, / and bit
operations (numba has no vector libm without SVML), ``sqrt`` is the correctly rounded one.

* float64: fdlibm's ``log`` kernel (exponent/mantissa split, ``s = f / (2 + f)``, degree-14
  series; within 1 ulp of the true log) and musl's ``__sin``/``__cos`` kernels on [0, pi/4]
  (within 1 ulp); each value is within 3 ulp of ``r cos``/``r sin`` of its exact uniforms.
* float32: the same 53-bit uniform and float64 exponent split (so ``1 - u`` keeps its resolution
  near ``u = 1``), then Cephes' ``logf`` polynomial, ``sqrtf`` and Cephes' ``sinf``/``cosf``
  polynomials in float32 on ``float32(phi)`` (log within 1.4 float32 ulp, sin/cos within 1 ulp);
  each value is within 3.1 float32 ulp of the float64 stream's value for the same generator state:
  the float32 stream is the float64 one rounded, up to those ulp.

numba compiles the kernels (no ``fastmath``: no reassociation or FMA contraction) and numpy runs
the same operations in the same order on arrays, so ``use_numba=False`` gives the same numbers bit
for bit (checked in the tests).  numba is a dependency of the toolkit;
in an environment without it the numpy path is used (about 30 ns a value).  The tests also check the stream's
statistics (moments, KS, tail frequencies, serial and cross-key correlation, pair uniformity).
"""

from __future__ import annotations

import numpy as np

__all__ = ["standard_normal", "HAVE_NUMBA"]

_U = np.uint64
_F = np.float32
_MASK64 = (1 << 64) - 1

# SplitMix64
_GAMMA_INT = 0x9E3779B97F4A7C15
_M1_INT = 0xBF58476D1CE4E5B9
_M2_INT = 0x94D049BB133111EB
_GAMMA = _U(_GAMMA_INT)
_M1 = _U(_M1_INT)
_M2 = _U(_M2_INT)
_SH30, _SH27, _SH31 = _U(30), _U(27), _U(31)
_SH11, _SH52, _SH61, _SH62, _SH63 = _U(11), _U(52), _U(61), _U(62), _U(63)
_ONE, _TWO = _U(1), _U(2)
_MANT = _U((1 << 52) - 1)          # mantissa bits of a float64
_SQRT2_MANT = _U(0x6A09E667F3BCD)   # mantissa bits of sqrt(2)
_EXP0 = _U(0x3FF)                   # biased exponent of [1, 2)
_EXPM1 = _U(0x3FE)                  # biased exponent of [1/2, 1)
_TWO_M53 = 2.0 ** -53
_PIO4_2M53 = np.pi / 4 * 2.0 ** -53

# fdlibm e_log.c
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
# musl __sin.c / __cos.c
_S1 = -1.66666666666666324348e-01
_S2 = 8.33333333332248946124e-03
_S3 = -1.98412698298579493134e-04
_S4 = 2.75573137070700676789e-06
_S5 = -2.50507602534068634195e-08
_S6 = 1.58969099521155010221e-10
_C1 = 4.16666666666666019037e-02
_C2 = -1.38888888888741095749e-03
_C3 = 2.48015872894767294178e-05
_C4 = -2.75573143513906633035e-07
_C5 = 2.08757232129817482790e-09
_C6 = -1.13596475577881948265e-11
# Cephes logf.c, sinf.c, cosf.c (float32)
_LF0, _LF1, _LF2, _LF3, _LF4, _LF5, _LF6, _LF7, _LF8 = (_F(c) for c in (
    7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
    -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1))
_LFQ1 = _F(-2.12194440e-4)
_LFQ2 = _F(0.693359375)
_SF1, _SF2, _SF3 = _F(-1.6666654611e-1), _F(8.3321608736e-3), _F(-1.9515295891e-4)
_CF1, _CF2, _CF3 = _F(4.166664568298827e-2), _F(-1.388731625493765e-3), _F(2.443315711809948e-5)
_F1, _F2, _FM2, _FH = _F(1.0), _F(2.0), _F(-2.0), _F(0.5)


# ---------------------------------------------------------------- arithmetic shared by both paths
# Written once; numba compiles them for scalars, numpy runs them on arrays, in the same order.

def _mix(z):
    """SplitMix64 finaliser (uint64, wrapping)."""
    z = (z ^ (z >> _SH30)) * _M1
    z = (z ^ (z >> _SH27)) * _M2
    return z ^ (z >> _SH31)


def _log64(f, k):
    """log(2**k (1 + f)), 1 + f in [sqrt(1/2), sqrt(2)) (fdlibm)."""
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    R = t2 + t1
    hfsq = 0.5 * f * f
    return k * _LN2_HI - ((hfsq - (s * (hfsq + R) + k * _LN2_LO)) - f)


def _sin64(x):
    """sin(x), |x| <= pi/4 (musl __sin)."""
    z = x * x
    w = z * z
    r = _S2 + z * (_S3 + z * _S4) + z * w * (_S5 + z * _S6)
    v = z * x
    return x + v * (_S1 + z * r)


def _cos64(x):
    """cos(x), |x| <= pi/4 (musl __cos)."""
    z = x * x
    w = z * z
    r = z * (_C1 + z * (_C2 + z * _C3)) + w * w * (_C4 + z * (_C5 + z * _C6))
    hz = 0.5 * z
    w = 1.0 - hz
    return w + (((1.0 - w) - hz) + z * r)


def _log32(f, k):
    """log(2**k (1 + f)) in float32, 1 + f in [sqrt(1/2), sqrt(2)) (Cephes logf)."""
    z = f * f
    y = f * z * ((((((((_LF0 * f + _LF1) * f + _LF2) * f + _LF3) * f + _LF4) * f + _LF5) * f
                    + _LF6) * f + _LF7) * f + _LF8)
    y = y + _LFQ1 * k
    y = y - _FH * z
    return f + y + _LFQ2 * k


def _sin32(x):
    """sin(x) in float32, |x| <= pi/4 (Cephes sinf)."""
    z = x * x
    return ((_SF3 * z + _SF2) * z + _SF1) * z * x + x


def _cos32(x):
    """cos(x) in float32, |x| <= pi/4 (Cephes cosf)."""
    z = x * x
    return ((_CF3 * z + _CF2) * z + _CF1) * z * z - _FH * z + _F1


# Bit generators whose raw output is one 64-bit word: ``random_raw()`` then equals
# ``integers(0, 2**64, dtype=np.uint64)`` (same value, same advance) and is ten times cheaper.
_RAW64 = tuple(getattr(np.random, c) for c in ("PCG64", "PCG64DXSM", "SFC64", "Philox") if hasattr(np.random, c))


def _mix_key(z: int) -> np.uint64:
    """``mix`` of a 64-bit key (Python ints: no overflow warnings)."""
    z = ((z ^ (z >> 30)) * _M1_INT) & _MASK64
    z = ((z ^ (z >> 27)) * _M2_INT) & _MASK64
    return _U(z ^ (z >> 31))


def _key(rng: np.random.Generator) -> np.uint64:
    """One 64-bit draw from ``rng``, mixed."""
    bg = rng.bit_generator
    z = bg.random_raw() if type(bg) in _RAW64 else rng.integers(0, 1 << 64, dtype=np.uint64)
    return _mix_key(int(z))


# ---------------------------------------------------------------- numpy path
def _pairs_np(K: np.uint64, j0: int, j1: int, dtype) -> np.ndarray:
    """Pairs ``j0 .. j1 - 1`` as an array (j1 - j0, 2)."""
    j = np.arange(j0, j1, dtype=np.uint64)
    c = j * _TWO * _GAMMA + K
    a = _mix(c)
    b = _mix(c + _GAMMA)
    u = ((a >> _SH11) + _ONE).astype(np.int64).astype(np.float64) * _TWO_M53
    bits = u.view(np.uint64)
    mb = bits & _MANT
    ex = np.where(mb > _SQRT2_MANT, _EXPM1, _EXP0)
    m = (mb | (ex << _SH52)).view(np.float64)
    k = (bits >> _SH52).astype(np.int64) - ex.astype(np.int64)
    phi = (((b & _MANT) << _ONE) | _ONE).astype(np.int64).astype(np.float64) * _PIO4_2M53
    swap = (b >> _SH63) != _U(0)
    out = np.empty((j1 - j0, 2), dtype)
    if dtype == np.float64:
        r = np.sqrt(-2.0 * _log64(m - 1.0, k.astype(np.float64)))
        sn, cs = _sin64(phi), _cos64(phi)
        g0 = 1.0 - 2.0 * ((b >> _SH62) & _ONE).astype(np.int64).astype(np.float64)
        g1 = 1.0 - 2.0 * ((b >> _SH61) & _ONE).astype(np.int64).astype(np.float64)
    else:
        r = np.sqrt(_FM2 * _log32((m - 1.0).astype(np.float32), k.astype(np.float32)))
        p = phi.astype(np.float32)
        sn, cs = _sin32(p), _cos32(p)
        g0 = _F1 - _F2 * ((b >> _SH62) & _ONE).astype(np.int64).astype(np.float32)
        g1 = _F1 - _F2 * ((b >> _SH61) & _ONE).astype(np.int64).astype(np.float32)
    np.multiply(r, np.where(swap, sn, cs) * g0, out=out[:, 0])
    np.multiply(r, np.where(swap, cs, sn) * g1, out=out[:, 1])
    return out


_CHUNK = 1 << 16  # pairs per numpy chunk (bounds the temporaries; does not change the numbers)


def _fill_np(K: np.uint64, flat: np.ndarray) -> None:
    n = flat.size
    npairs = (n + 1) // 2
    for j0 in range(0, npairs, _CHUNK):
        j1 = min(npairs, j0 + _CHUNK)
        z = _pairs_np(K, j0, j1, flat.dtype).reshape(-1)
        flat[2 * j0:2 * j1] = z[:min(n, 2 * j1) - 2 * j0]


# ---------------------------------------------------------------- numba path
try:  # pragma: no cover - exercised implicitly
    from llvmlite import ir as _ir
    from numba import njit
    from numba.core import types as _types
    from numba.extending import intrinsic

    @intrinsic
    def _as_f64(typingctx, x):
        """Reinterpret a uint64's bits as a float64 (free; vectorizes)."""
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], _ir.DoubleType())
        return _types.float64(_types.uint64), codegen

    @intrinsic
    def _as_f32(typingctx, x):
        """Reinterpret an int32's bits as a float32."""
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], _ir.FloatType())
        return _types.float32(_types.int32), codegen

    @intrinsic
    def _as_u64(typingctx, x):
        """Reinterpret a float64's bits as a uint64."""
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], _ir.IntType(64))
        return _types.uint64(_types.float64), codegen

    _mix_nb = njit(inline="always")(_mix)
    _log64_nb = njit(inline="always")(_log64)
    _sin64_nb = njit(inline="always")(_sin64)
    _cos64_nb = njit(inline="always")(_cos64)
    _log32_nb = njit(inline="always")(_log32)
    _sin32_nb = njit(inline="always")(_sin32)
    _cos32_nb = njit(inline="always")(_cos32)

    @njit(inline="always")
    def _common_nb(K, j):
        c = _U(j) * _TWO * _GAMMA + K
        a = _mix_nb(c)
        b = _mix_nb(c + _GAMMA)
        u = np.float64(np.int64((a >> _SH11) + _ONE)) * _TWO_M53
        bits = _as_u64(u)
        mb = bits & _MANT
        ex = _EXPM1 if mb > _SQRT2_MANT else _EXP0
        m = _as_f64(mb | (ex << _SH52))
        k = np.int64(bits >> _SH52) - np.int64(ex)
        phi = np.float64(np.int64(((b & _MANT) << _ONE) | _ONE)) * _PIO4_2M53
        return b, m, k, phi

    @njit(inline="always")
    def _pair64_nb(K, j):
        b, m, k, phi = _common_nb(K, j)
        r = np.sqrt(-2.0 * _log64_nb(m - 1.0, np.float64(k)))
        sn = _sin64_nb(phi)
        cs = _cos64_nb(phi)
        swap = (b >> _SH63) != _U(0)
        x0 = sn if swap else cs
        x1 = cs if swap else sn
        g0 = 1.0 - 2.0 * np.float64(np.int64((b >> _SH62) & _ONE))
        g1 = 1.0 - 2.0 * np.float64(np.int64((b >> _SH61) & _ONE))
        return r * (x0 * g0), r * (x1 * g1)

    @njit(inline="always")
    def _pair32_nb(K, j):
        b, m, k, phi = _common_nb(K, j)
        r = np.sqrt(_FM2 * _log32_nb(np.float32(m - 1.0), np.float32(k)))
        p = np.float32(phi)
        sn = _sin32_nb(p)
        cs = _cos32_nb(p)
        swap = (b >> _SH63) != _U(0)
        x0 = sn if swap else cs
        x1 = cs if swap else sn
        g0 = _F1 - _F2 * np.float32(np.int64((b >> _SH62) & _ONE))
        g1 = _F1 - _F2 * np.float32(np.int64((b >> _SH61) & _ONE))
        return r * (x0 * g0), r * (x1 * g1)

    @njit(nogil=True, cache=True, error_model="numpy")
    def _fill64(K, out):
        m = out.size // 2
        for j in range(m):
            z0, z1 = _pair64_nb(K, j)
            out[2 * j] = z0
            out[2 * j + 1] = z1
        if out.size > 2 * m:
            z0, z1 = _pair64_nb(K, m)
            out[2 * m] = z0

    @njit(nogil=True, cache=True, error_model="numpy")
    def _fill32(K, out):
        m = out.size // 2
        for j in range(m):
            z0, z1 = _pair32_nb(K, j)
            out[2 * j] = z0
            out[2 * j + 1] = z1
        if out.size > 2 * m:
            z0, z1 = _pair32_nb(K, m)
            out[2 * m] = z0

    # ------------------------------------------------------------ fused device kernel (float32)
    @njit(inline="always")
    def _exp32_nb(x):
        """exp of a float32 by Cephes' expf polynomial (within 2 float32 ulp of the true value on
        [-87, 88], clamped outside; vectorizes: +, *, floor and an exponent built from integer
        bits).  Checked against the earlier float64-scaled form on all 2**32 float32 inputs: the
        same values."""
        x = min(max(x, np.float32(-87.0)), np.float32(88.0))
        n = np.floor(x * np.float32(1.44269504088896341) + _FH)
        r = x - n * np.float32(0.693359375)
        r = r - n * np.float32(-2.12194440e-4)
        p = np.float32(1.9875691500e-4)
        p = p * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        p = p * (r * r) + r + _F1
        # 2**n exactly, as float32 bits (n in [-126, 127]: a normal number, and so is the product;
        # int32 keeps the loop vectorized on AVX2, which has no float-to-int64 conversion)
        return p * _as_f32((np.int32(n) + np.int32(127)) << np.int32(23))

    @njit(nogil=True, cache=True, error_model="numpy")
    def _device32(K1, K2, K3, T, scale, nu_mean, nu_std, fold, negL, qR, floor, out):
        """One chip of additive-normal programming, drift and read noise in one pass:
        ``g0 = max(T + scale z1, floor)``, ``nu = mean + std z2`` (``|nu|`` when ``fold``),
        ``g = g0 exp(-L nu)``, ``g = max(g + g qR z3, floor)``; ``z1, z2, z3`` element ``i`` of the
        streams keyed ``K1, K2, K3`` (the values :func:`standard_normal` gives for those keys)."""
        n = out.size
        m = n // 2
        sgn = np.float32(-1.0) if fold else _F1      # |nu| = max(nu, -nu) when folded
        for j in range(m):
            a0, a1 = _pair32_nb(K1, j)
            b0, b1 = _pair32_nb(K2, j)
            c0, c1 = _pair32_nb(K3, j)
            i = 2 * j
            out[i] = _one_device(a0, b0, c0, T[i], scale[i], nu_mean[i], nu_std[i], sgn, negL, qR[i], floor)
            out[i + 1] = _one_device(a1, b1, c1, T[i + 1], scale[i + 1], nu_mean[i + 1], nu_std[i + 1], sgn, negL,
                                     qR[i + 1], floor)
        if n > 2 * m:
            a0, a1 = _pair32_nb(K1, m)
            b0, b1 = _pair32_nb(K2, m)
            c0, c1 = _pair32_nb(K3, m)
            i = 2 * m
            out[i] = _one_device(a0, b0, c0, T[i], scale[i], nu_mean[i], nu_std[i], sgn, negL, qR[i], floor)

    @njit(inline="always")
    def _one_device(z1, z2, z3, T, scale, nu_mean, nu_std, sgn, negL, qR, floor):
        g = max(z1 * scale + T, floor)
        nu = z2 * nu_std + nu_mean
        nu = max(nu, sgn * nu)            # sgn = -1: |nu|; sgn = +1: nu
        g = g * _exp32_nb(nu * negL)
        g = g + g * qR * z3
        return max(g, floor)

    #: ``exp`` of a float32 in compiled code (Cephes expf, within 2 float32 ulp; vectorizes), for
    #: other kernels (None without numba)
    exp32 = _exp32_nb
    HAVE_NUMBA = True
except Exception:  # numba missing or broken: numpy gives the same numbers
    HAVE_NUMBA = False
    exp32 = None


def standard_normal(rng: np.random.Generator, shape, dtype=np.float32, out: np.ndarray | None = None,
                    use_numba: bool | None = None) -> np.ndarray:
    """Standard normals of ``shape`` (or filling ``out``, whose shape then wins), ``dtype`` float32
    or float64, from the counter-based stream keyed by one 64-bit draw of ``rng`` (module
    docstring).  ``use_numba=False`` forces the numpy path (same numbers, slower)."""
    dtype = np.dtype(dtype) if out is None else out.dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"standard_normal: dtype must be float32 or float64; got {dtype}.")
    if out is None:
        out = np.empty(shape, dtype=dtype)
    K = _key(rng)
    contiguous = out.flags.c_contiguous
    flat = out.reshape(-1) if contiguous else np.empty(out.size, dtype)
    fast = HAVE_NUMBA if use_numba is None else (use_numba and HAVE_NUMBA)
    if fast:
        (_fill32 if dtype == np.float32 else _fill64)(K, flat)
    else:
        _fill_np(K, flat)
    if not contiguous:
        out[...] = flat.reshape(out.shape)
    return out
