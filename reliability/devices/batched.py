"""Many chips in one call: each chip's generator keys without building its generator, and a
prepared device array drawn for a block of chips by one compiled loop.

A simulated chip ``i`` draws from ``chip_rng(seed, i)``, i.e.
``Generator(PCG64(SeedSequence(seed, spawn_key=(i,))))``, and a device array's normals consume one
64-bit raw output of it each (the key of :func:`reliability.devices.fastrandom.standard_normal`).
Building the three objects costs tens of microseconds a chip, more than drawing every device of a
small network, and a Python-level loop over chips costs as much again.  :func:`chip_keys` computes
the same words directly, for many chips at once:

* ``SeedSequence``: the entropy ``(seed words padded to the pool size, chip-index words)``, 32-bit
  little-endian words of the integers, is mixed into a pool of four 32-bit words and the state
  words are drawn from the pool by the hash of M. E. O'Neill's ``seed_seq_fe`` as numpy documents
  and implements it (multiply-xorshift hashes, constants below);
* ``PCG64``: the first four state words as two 128-bit integers (initial state, stream), the
  ``pcg_setseq_128`` seeding (state 0, increment ``2 stream + 1``, step, add the initial state,
  step) and each raw output the XSL-RR output of the state after one LCG step; the 128-bit products
  are formed from 32-bit halves (numba has no 128-bit integer);
* each key is the SplitMix64 finaliser of a raw output, as ``fastrandom._key`` mixes it.

The tests check every word against numpy's objects (small and multi-word seeds and chip indices).
Without numba, :func:`chip_keys` builds each chip's generator (the same words, slowly).

The device kernels below draw the chips of a block exactly as :class:`PreparedArray` draws one chip
(the same normals, the same float32 operations in the same order, no fused multiply-add), so a chip
is bit-identical whichever route drew it; the tests compare both routes.
"""

from __future__ import annotations

import numpy as np

from reliability.devices import fastrandom as _fr
from reliability.streams import chip_rng

__all__ = ["chip_keys", "normal_rows", "HAVE_NUMBA"]

_M32_INT = 0xFFFFFFFF
# numpy's SeedSequence (numpy/random/bit_generator.pyx): pool of 4 words, 32-bit hashes
_POOL = 4
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
# PCG64's 128-bit multiplier, as two 64-bit halves
_PCG_MULT_HI, _PCG_MULT_LO = 0x2360ED051FC65DA4, 0x4385DF649FCCF645


def _words(n: int) -> list[int]:
    """32-bit little-endian words of a non-negative integer (``[0]`` for 0), as SeedSequence
    coerces an int."""
    n = int(n)
    if n < 0:
        raise ValueError(f"seeds and chip indices must be non-negative; got {n}.")
    out = [n & _M32_INT] if n == 0 else []
    while n > 0:
        out.append(n & _M32_INT)
        n >>= 32
    return out


def _keys_python(seed: int, chips: np.ndarray, n: int) -> np.ndarray:
    keys = np.empty((len(chips), n), dtype=np.uint64)
    for s, i in enumerate(chips):
        bg = chip_rng(seed, int(i)).bit_generator
        for k in range(n):
            keys[s, k] = _fr._mix_key(int(bg.random_raw()))
    return keys


try:  # pragma: no cover - exercised implicitly
    from numba import njit

    _U = np.uint64
    _M32 = _U(_M32_INT)
    _S16, _S32, _S58, _S63, _S1, _S64 = _U(16), _U(32), _U(58), _U(63), _U(1), _U(64)
    _IA, _MA, _IB, _MB = _U(_INIT_A), _U(_MULT_A), _U(_INIT_B), _U(_MULT_B)
    _ML, _MR = _U(_MIX_L), _U(_MIX_R)
    _PH, _PL = _U(_PCG_MULT_HI), _U(_PCG_MULT_LO)
    _mix_nb = _fr._mix_nb

    @njit(inline="always")
    def _hashmix(value, h):
        """One hash of SeedSequence: returns (hashed value, next hash constant)."""
        value = value ^ h
        h = (h * _MA) & _M32
        value = (value * h) & _M32
        return value ^ (value >> _S16), h

    @njit(inline="always")
    def _mix32(x, y):
        r = (_ML * x - _MR * y) & _M32
        return r ^ (r >> _S16)

    @njit(inline="always")
    def _mul_hi(a, b):
        """High 64 bits of the 128-bit product of two uint64."""
        a0, a1, b0, b1 = a & _M32, a >> _S32, b & _M32, b >> _S32
        p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
        mid = (p00 >> _S32) + (p01 & _M32) + (p10 & _M32)
        return p11 + (p01 >> _S32) + (p10 >> _S32) + (mid >> _S32)

    @njit(inline="always")
    def _step(hi, lo, ih, il):
        """One PCG64 LCG step: state * mult + inc (mod 2**128)."""
        nh = _mul_hi(lo, _PL) + hi * _PL + lo * _PH
        nl = lo * _PL
        l2 = nl + il
        return nh + ih + (_S1 if l2 < nl else _U(0)), l2

    @njit(nogil=True, cache=True)
    def _chip_keys(seed_words, chips, n, keys):
        ne = seed_words.size
        ent = np.zeros(max(ne, _POOL) + 2, dtype=np.uint64)
        ent[:ne] = seed_words
        base = max(ne, _POOL)
        pool = np.zeros(_POOL, dtype=np.uint64)
        state = np.zeros(2 * _POOL, dtype=np.uint64)
        for s in range(chips.size):
            i = _U(chips[s])
            ent[base] = i & _M32
            m = base + 1
            if (i >> _S32) != _U(0):
                ent[base + 1] = i >> _S32
                m = base + 2
            h = _IA
            for k in range(_POOL):
                pool[k], h = _hashmix(ent[k] if k < m else _U(0), h)
            for a in range(_POOL):
                for b in range(_POOL):
                    if a != b:
                        v, h = _hashmix(pool[a], h)
                        pool[b] = _mix32(pool[b], v)
            for a in range(_POOL, m):
                for b in range(_POOL):
                    v, h = _hashmix(ent[a], h)
                    pool[b] = _mix32(pool[b], v)
            h = _IB
            for k in range(2 * _POOL):
                v = pool[k % _POOL] ^ h
                h = (h * _MB) & _M32
                v = (v * h) & _M32
                state[k] = v ^ (v >> _S16)
            w0 = state[0] | (state[1] << _S32)      # uint32 pairs viewed as little-endian uint64
            w1 = state[2] | (state[3] << _S32)
            w2 = state[4] | (state[5] << _S32)
            w3 = state[6] | (state[7] << _S32)
            ih = (w2 << _S1) | (w3 >> _S63)         # increment = 2 * stream + 1
            il = (w3 << _S1) | _S1
            hi, lo = _step(_U(0), _U(0), ih, il)
            lo2 = lo + w1
            hi = hi + w0 + (_S1 if lo2 < lo else _U(0))
            hi, lo = _step(hi, lo2, ih, il)
            for k in range(n):
                hi, lo = _step(hi, lo, ih, il)
                x = hi ^ lo
                rot = hi >> _S58
                keys[s, k] = _mix_nb((x >> rot) | (x << ((_S64 - rot) & _S63)))

    _one_device = _fr._one_device

    @njit(inline="always")
    def _program_one(z1, z3, T, scale, loc, has_loc, floor, has_floor, has_prog, qR, has_read, abs_g):
        # PreparedArray.program then read, element-wise, in its operation order
        if has_prog:
            g = z1 * scale
            if has_loc:
                g = g + loc
            g = g + T
        else:
            g = T
        if has_floor:
            g = max(g, floor)
        if has_read:
            z = z3 * qR
            z = z * (abs(g) if abs_g else g)
            g = g + z
            if has_floor:
                g = max(g, floor)
        return g

    @njit(nogil=True, cache=True, error_model="numpy")
    def _program_chips(keys, kp, kr, T, scale, loc, has_loc, floor, has_floor, qR, abs_g, out):
        # per chip: the normals first (the generator's loop runs alone, as fast as a plain fill),
        # then the element-wise arithmetic
        S, n = out.shape
        z3 = np.empty(n, dtype=np.float32)
        for s in range(S):
            row = out[s]
            if kp >= 0:
                _fr._fill32(keys[s, kp], row)
            if kr >= 0:
                _fr._fill32(keys[s, kr], z3)
            for i in range(n):
                row[i] = _program_one(row[i], z3[i], T[i], scale[i], loc[i], has_loc, floor, has_floor, kp >= 0,
                                      qR[i], kr >= 0, abs_g)

    @njit(nogil=True, cache=True, error_model="numpy")
    def _fused_chips(keys, k0, T, scale, nu_mean, nu_std, fold, negL, qR, floor, out):
        S, n = out.shape
        sgn = np.float32(-1.0) if fold else np.float32(1.0)
        z2 = np.empty(n, dtype=np.float32)
        z3 = np.empty(n, dtype=np.float32)
        for s in range(S):
            row = out[s]
            _fr._fill32(keys[s, k0], row)
            _fr._fill32(keys[s, k0 + 1], z2)
            _fr._fill32(keys[s, k0 + 2], z3)
            for i in range(n):
                row[i] = _one_device(row[i], z2[i], z3[i], T[i], scale[i], nu_mean[i], nu_std[i], sgn, negL, qR[i],
                                     floor)

    @njit(nogil=True, cache=True)
    def _fill_rows32(keys, out):
        for s in range(out.shape[0]):
            _fr._fill32(keys[s], out[s])

    @njit(nogil=True, cache=True)
    def _fill_rows64(keys, out):
        for s in range(out.shape[0]):
            _fr._fill64(keys[s], out[s])

    HAVE_NUMBA = True
except Exception:  # numba missing or broken: the chips are drawn one at a time by PreparedArray
    HAVE_NUMBA = False


def chip_keys(seed: int, chips, n: int) -> np.ndarray:
    """The keys of the first ``n`` normal fills of each chip's generator: ``(len(chips), n)``
    uint64, row ``s`` the words ``fastrandom._key(chip_rng(seed, chips[s]))`` returns ``n`` times in
    a row."""
    chips = np.ascontiguousarray(chips, dtype=np.int64).reshape(-1)
    if chips.size and chips.min() < 0:
        raise ValueError("chip indices must be non-negative.")
    if not HAVE_NUMBA:
        return _keys_python(seed, chips, int(n))
    keys = np.empty((chips.size, int(n)), dtype=np.uint64)
    _chip_keys(np.array(_words(seed), dtype=np.uint64), chips, int(n), keys)
    return keys


def normal_rows(keys: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Fill row ``s`` of ``out`` (S, n), float32 or float64, with the normals
    :func:`~reliability.devices.fastrandom.standard_normal` gives for the key ``keys[s]``
    (``keys`` from :func:`chip_keys`); returns ``out``."""
    keys = np.ascontiguousarray(keys, dtype=np.uint64).reshape(-1)
    if not out.flags.c_contiguous or out.dtype not in (np.float32, np.float64):
        raise ValueError(f"normal_rows fills a C-contiguous float32 or float64 array; got {out.dtype}.")
    flat = out.reshape(out.shape[0], -1)
    if HAVE_NUMBA:
        (_fill_rows32 if out.dtype == np.float32 else _fill_rows64)(keys, flat)
        return out
    for s in range(out.shape[0]):
        row = np.empty(flat.shape[1], out.dtype)
        _fr._fill_np(np.uint64(keys[s]), row)
        flat[s] = row
    return out
