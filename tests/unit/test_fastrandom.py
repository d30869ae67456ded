"""The counter-based standard-normal stream of ``reliability.devices.fastrandom``.

numba and numpy paths bit for bit; accuracy of the polynomial log/sin/cos against numpy's libm;
the stream's layout and generator use; and seeded statistical checks on 10^6 draws, with
tolerances of k standard errors (stated inline; k = 5 unless said).
"""

import numpy as np
import pytest
from scipy import special, stats

from reliability.devices import fastrandom as fr
from reliability.devices.fastrandom import HAVE_NUMBA, standard_normal

N = 1_000_000
DTYPES = [np.float32, np.float64]


def _bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def _ulps(x, ref, dtype):
    """Largest |x - ref| in ulps of ``dtype`` at |ref|."""
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(np.asarray(x, dtype=np.float64) - ref)
                        / np.spacing(np.abs(ref).astype(dtype)).astype(np.float64)))


def _stream(raw_key, n, dtype=np.float64):
    """The stream for a given raw 64-bit key (what standard_normal does after drawing the key)."""
    out = np.empty(n, dtype)
    K = fr._mix_key(raw_key)
    (fr._fill64 if dtype == np.float64 else fr._fill32)(K, out) if HAVE_NUMBA else fr._fill_np(K, out)
    return out


def _exact(seed, n):
    """The stream recomputed from its definition with numpy's log/sin/cos (float64)."""
    K = fr._key(np.random.default_rng(seed))
    j = np.arange((n + 1) // 2, dtype=np.uint64)
    c = j * np.uint64(2) * fr._GAMMA + K
    a, b = fr._mix(c), fr._mix(c + fr._GAMMA)
    u = ((a >> np.uint64(11)) + np.uint64(1)).astype(np.float64) * 2.0 ** -53
    phi = (2 * (b & np.uint64(2 ** 52 - 1)).astype(np.float64) + 1) * (np.pi / 2 ** 55)
    r = np.sqrt(-2 * np.log(u))
    swap = (b >> np.uint64(63)) == 1
    g0 = np.where((b >> np.uint64(62)) & np.uint64(1), -1.0, 1.0)
    g1 = np.where((b >> np.uint64(61)) & np.uint64(1), -1.0, 1.0)
    z = np.empty((len(j), 2))
    z[:, 0] = r * np.where(swap, np.sin(phi), np.cos(phi)) * g0
    z[:, 1] = r * np.where(swap, np.cos(phi), np.sin(phi)) * g1
    return z.reshape(-1)[:n]


# ---------------------------------------------------------------- numba == numpy, bit for bit
@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 17, 4097, 2 * fr._CHUNK + 3, N])
def test_numba_and_numpy_paths_are_bitwise_identical(dtype, n):
    a = standard_normal(np.random.default_rng(n), (n,), dtype, use_numba=True)
    b = standard_normal(np.random.default_rng(n), (n,), dtype, use_numba=False)
    assert a.dtype == b.dtype == dtype
    np.testing.assert_array_equal(_bits(a), _bits(b))


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_counters_are_bitwise_identical(dtype):
    # keys whose words hit u = 2**-53 / u = 1 and angles at both ends are covered by the kernels'
    # own tests below; here: keys near 0 and 2**64 (wrapping counters)
    for raw in (0, 1, 2 ** 63, 2 ** 64 - 1):
        K = fr._mix_key(raw)
        a = np.empty(1001, dtype)
        (fr._fill64 if dtype == np.float64 else fr._fill32)(K, a)
        b = np.empty(1001, dtype)
        fr._fill_np(K, b)
        np.testing.assert_array_equal(_bits(a), _bits(b))


# ---------------------------------------------------------------- layout and generator use
@pytest.mark.parametrize("dtype", DTYPES)
def test_shape_out_and_layout(dtype):
    flat = standard_normal(np.random.default_rng(1), (24,), dtype)
    z = standard_normal(np.random.default_rng(1), (2, 3, 4), dtype)
    assert z.shape == (2, 3, 4) and z.dtype == dtype
    np.testing.assert_array_equal(z.reshape(-1), flat)
    out = np.empty((2, 3, 4), dtype)
    assert standard_normal(np.random.default_rng(1), None, dtype, out=out) is out
    np.testing.assert_array_equal(out, z)
    big = np.zeros((4, 6, 4), dtype)
    view = big[::2, ::2]                                   # not contiguous
    assert standard_normal(np.random.default_rng(1), None, dtype, out=view) is view
    np.testing.assert_array_equal(view, z)
    assert np.all(big[1::2] == 0) and np.all(big[:, 1::2] == 0)
    # prefix-stable: the first values do not depend on the size
    long = standard_normal(np.random.default_rng(1), (1001,), dtype)
    np.testing.assert_array_equal(long[:24], flat)


def test_rejects_other_dtypes():
    with pytest.raises(TypeError):
        standard_normal(np.random.default_rng(0), (3,), np.float16)


@pytest.mark.parametrize("n", [0, 1, 10, 100_001])
def test_generator_advances_by_one_64_bit_draw(n):
    for bg in (np.random.PCG64, np.random.SFC64, np.random.MT19937):
        r1, r2 = np.random.Generator(bg(3)), np.random.Generator(bg(3))
        standard_normal(r1, (n,))
        r2.integers(0, 2 ** 64, dtype=np.uint64)
        assert r1.random() == r2.random()


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_definition_with_libm(dtype):
    z = standard_normal(np.random.default_rng(7), (200_001,), dtype)
    ref = _exact(7, 200_001)
    assert _ulps(z, ref, dtype) <= 4.0


def test_float32_is_float64_stream_rounded():
    z32 = standard_normal(np.random.default_rng(8), (200_000,), np.float32)
    z64 = standard_normal(np.random.default_rng(8), (200_000,), np.float64)
    assert _ulps(z32, z64, np.float32) <= 4.0


# ---------------------------------------------------------------- the polynomial kernels
def _log_args(u):
    bits = u.view(np.uint64)
    mb = bits & fr._MANT
    ex = np.where(mb > fr._SQRT2_MANT, fr._EXPM1, fr._EXP0)
    m = (mb | (ex << fr._SH52)).view(np.float64)
    return m - 1.0, (bits >> fr._SH52).astype(np.int64) - ex.astype(np.int64)


def test_log_kernels_against_numpy():
    rng = np.random.default_rng(0)
    k = np.concatenate([rng.integers(0, 2 ** 53, 500_000, dtype=np.uint64), np.arange(1000, dtype=np.uint64),
                        np.uint64(2 ** 53 - 1) - np.arange(1000, dtype=np.uint64)])
    u = (k + np.uint64(1)).astype(np.float64) * 2.0 ** -53      # the radius uniforms, exact
    f, e = _log_args(u)
    ref = np.log(u)
    L64 = fr._log64(f, e.astype(np.float64))
    L32 = fr._log32(f.astype(np.float32), e.astype(np.float32))
    assert L32.dtype == np.float32
    one = u == 1.0
    assert np.all(L64[one] == 0) and np.all(L32[one] == 0)
    assert np.max(np.abs(L64[~one] / ref[~one] - 1)) <= 2.3e-16   # measured 2.2e-16 (1 ulp)
    assert np.max(np.abs(L32[~one] / ref[~one] - 1)) <= 1.5e-7    # measured 1.33e-7 (1.3 float32 ulp)


def test_sincos_kernels_against_numpy():
    rng = np.random.default_rng(1)
    k = np.concatenate([rng.integers(0, 2 ** 52, 500_000, dtype=np.uint64), np.arange(100, dtype=np.uint64),
                        np.uint64(2 ** 52 - 1) - np.arange(100, dtype=np.uint64)])
    phi = (2 * k.astype(np.float64) + 1) * fr._PIO4_2M53         # the angles, in (0, pi/4)
    assert phi.min() > 0 and phi.max() < np.pi / 4
    assert _ulps(fr._sin64(phi), np.sin(phi), np.float64) <= 1.0
    assert _ulps(fr._cos64(phi), np.cos(phi), np.float64) <= 1.0
    p = phi.astype(np.float32)
    s32, c32 = fr._sin32(p), fr._cos32(p)
    assert s32.dtype == c32.dtype == np.float32
    assert _ulps(s32, np.sin(p.astype(np.float64)), np.float32) <= 1.0   # measured 0.76
    assert _ulps(c32, np.cos(p.astype(np.float64)), np.float32) <= 1.0   # measured 0.98


@pytest.mark.parametrize("dtype", DTYPES)
def test_largest_value(dtype):
    zmax = np.sqrt(106 * np.log(2.0))                              # u = 2**-53, angle ~ 0
    f = fr._log64 if dtype == np.float64 else fr._log32
    r = np.sqrt(-2 * f(dtype(0.0), dtype(-53.0)))
    assert abs(r - zmax) <= 4 * np.spacing(dtype(zmax)) and abs(zmax - 8.5717) < 1e-4
    cos = (fr._cos64 if dtype == np.float64 else fr._cos32)(dtype(fr._PIO4_2M53))
    assert cos == 1.0
    assert np.abs(standard_normal(np.random.default_rng(2), (N,), dtype)).max() < zmax


# ---------------------------------------------------------------- statistics (seeded, 10^6 draws)
@pytest.fixture(scope="module")
def draws():
    return {dt: standard_normal(np.random.default_rng(2024), (N,), dt).astype(np.float64) for dt in DTYPES}


@pytest.mark.parametrize("dtype", DTYPES)
def test_moments_and_ks(draws, dtype):
    z = draws[dtype]
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    assert abs(stats.skew(z)) < 5 * np.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * np.sqrt(24 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-3


@pytest.mark.parametrize("dtype", DTYPES)
def test_tail_frequencies(draws, dtype):
    z = np.abs(draws[dtype])
    for t in (1.0, 2.0, 3.0, 4.0, 5.0):
        p = 2 * special.ndtr(-t)
        count = int((z > t).sum())
        # two-sided binomial test at 1e-4 (for 5 sigma, 0.57 expected: 0..5 accepted)
        assert stats.binomtest(count, z.size, p).pvalue > 1e-4, (t, count, z.size * p)


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_serial_correlation(draws, dtype):
    z = draws[dtype]
    se = 1 / np.sqrt(z.size)
    for lag in (1, 2, 3, 4, 7, 64):
        assert abs(np.corrcoef(z[:-lag], z[lag:])[0, 1]) < 5 * se, lag
    # the two values of a Box-Muller pair share a radius: their squares must still be uncorrelated
    a, b = z[0::2], z[1::2]
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 * np.sqrt(2) * se
    assert abs(np.corrcoef(a * a, b * b)[0, 1]) < 5 * np.sqrt(2) * se
    assert abs(np.corrcoef(np.abs(z[1:-1:2]), np.abs(z[2::2]))[0, 1]) < 5 * np.sqrt(2) * se


@pytest.mark.parametrize("lag", [0, 1])
def test_pairs_uniform_in_the_plane(draws, lag):
    # (z[2i+lag], z[2i+1+lag]) through Phi: uniform on a 16 x 16 grid (chi-square, 255 dof)
    z = draws[np.float64]
    u = special.ndtr(z[lag:])
    m = (u.size // 2) * 2
    i = np.minimum((u[:m:2] * 16).astype(int), 15)
    j = np.minimum((u[1:m:2] * 16).astype(int), 15)
    counts = np.bincount(i * 16 + j, minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-4


@pytest.mark.parametrize("keys", [(0, 1), (12345, 12346), (2 ** 63 - 1, 2 ** 63), (2 ** 64 - 1, 0)])
def test_neighbouring_keys_are_independent(keys):
    a, b = (_stream(k, 200_000) for k in keys)
    se = 1 / np.sqrt(a.size)
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 * se
    assert abs(np.corrcoef(a * a, b * b)[0, 1]) < 5 * se
    assert abs(np.corrcoef(a[1:], b[:-1])[0, 1]) < 5 * se
    # two streams together are one normal sample
    assert stats.ks_2samp(a, b).pvalue > 1e-4


def test_neighbouring_mixed_keys_are_independent():
    # even unmixed keys K, K + 1 (adjacent SplitMix64 states) give unrelated streams
    n = 200_000
    out = [np.empty(n) for _ in range(2)]
    for K, o in zip((np.uint64(2 ** 40), np.uint64(2 ** 40 + 1)), out):
        fr._fill64(K, o) if HAVE_NUMBA else fr._fill_np(K, o)
    assert abs(np.corrcoef(*out)[0, 1]) < 5 / np.sqrt(n)
    assert abs(np.corrcoef(out[0] ** 2, out[1] ** 2)[0, 1]) < 5 / np.sqrt(n)


def test_fused_device_pass_equals_program_then_read():
    """PreparedArray.sample_fused draws the same normals as program + read and differs only by rounding."""
    from reliability.devices import load_device
    from reliability.devices.prepared import PreparedArray

    if not HAVE_NUMBA:
        pytest.skip("the fused pass needs numba")
    T = np.random.default_rng(0).uniform(0, 25, (97, 33)).astype(np.float32)   # odd size: the tail element
    for name in ("pcm", "pcm:g_max=20"):
        p = PreparedArray(load_device(name), T)
        assert p.fused_ok(86400.0) and not p.fused_ok(0.0)      # no drift or read noise at t = 0
        rng = np.random.default_rng(5)
        a = p.read(p.program(rng), 86400.0, rng)
        after_a = rng.random()
        rng = np.random.default_rng(5)
        b = p.sample_fused(86400.0, rng=rng)
        assert rng.random() == after_a                            # the generator advanced identically
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=1e-5)
        assert np.all(b >= 0)


def test_fast_exp_polynomial_accuracy():
    from numba import njit

    from reliability.devices import fastrandom as fr

    if not HAVE_NUMBA:
        pytest.skip("numba kernel")

    @njit
    def ev(x, o):
        for i in range(x.size):
            o[i] = fr._exp32_nb(x[i])

    x = np.linspace(-80, 80, 400001).astype(np.float32)
    o = np.empty_like(x)
    ev(x, o)
    rel = np.abs(o / np.exp(x.astype(np.float64)) - 1)
    assert rel.max() < 2 * 2.0 ** -24 * 1.5
