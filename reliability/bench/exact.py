"""Benchmark problems whose tail probabilities are known in closed form, at the toolkit's scale.

Each is a real network run through the real simulator, so every estimator that works on a
network works on them unchanged: one dense layer of ``dim / 2`` inputs and two outputs, with
weight-level Gaussian variation (``weight-gaussian:sigma=s``, additive noise of standard
deviation ``s * max|W|``, exactly Gaussian in the simulator).  Evaluation sample ``j`` is the unit
vector ``e_j`` with label 1, so it is classified right when

    W[j, 1] - W[j, 0] + s max|W| (z[j, 1] - z[j, 0]) > 0,

a linear limit state in the chip's latent vector ``z`` (dimension ``dim``; all but ``2 m``
coordinates play no part, as in a network where few weights decide a sample).  With
``W[j, 1] - W[j, 0] = beta_j sqrt(2) s max|W|`` sample ``j`` fails with probability
``Phi(-beta_j)``, independently of the others (disjoint weights).  So:

- one sample (``m = 1``): the **linear limit state**, ``P(count <= 0) = Phi(-beta)``;
- ``m`` samples: a **series system** of ``m`` failure regions in orthogonal directions; the number
  of failing samples is Poisson-binomial, so ``P(count <= c)`` is exact for every ``c``: ``c = m - 1``
  is "any region fails", lower ``c`` asks for several regions at once.

``max|W|`` is pinned to 1 by one weight on an input that no sample uses.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from reliability.cim.graph import GraphNode, Network, build_network
from reliability.errors import ReliabilityError

__all__ = ["ExactCase", "exact_case", "EXACT_CASES", "poisson_binomial"]

#: default relative weight noise of the exact cases
SIGMA = 0.1

#: version of the construction below; part of every exact case's :attr:`ExactCase.version`
GENERATOR_VERSION = 1


def poisson_binomial(p_fail) -> np.ndarray:
    """``out[r] = P(exactly r of the independent events happen)``, events with probabilities
    ``p_fail`` (exact convolution in float64, ``r = 0 .. m``; upper tails are summed from it, so
    probabilities far below 1e-16 keep their digits)."""
    dist = np.array([1.0])
    for p in np.asarray(p_fail, dtype=float):
        dist = np.concatenate([dist * (1 - p), [0.0]]) + np.concatenate([[0.0], dist * p])
    return dist


@dataclass(frozen=True, eq=False)
class ExactCase:
    """A benchmark problem with closed-form tail probabilities (module docstring).

    Attributes
    ----------
    name : str
    network : Network
        One dense layer, ``dim / 2`` inputs, two outputs.
    X, y : numpy.ndarray
        ``m`` evaluation samples (unit vectors) and their labels (all 1).
    variation : str
        ``weight-gaussian:sigma=...``.
    betas : numpy.ndarray
        Reliability index of each sample: it fails with probability ``Phi(-beta_j)``.
    """

    name: str
    network: Network
    X: np.ndarray
    y: np.ndarray
    variation: str
    betas: np.ndarray

    @property
    def n_samples(self) -> int:
        return int(len(self.y))

    @property
    def dim(self) -> int:
        """Dimension of a chip's latent vector (the number of weights)."""
        return int(2 * self.X.shape[1])

    @property
    def events(self) -> tuple[int, ...]:
        """The suite's event: ``n_correct <= m - 1``, some region fails (the linear limit state's
        only one)."""
        return (self.n_samples - 1,)

    @property
    def version(self) -> str:
        """Digest of the construction: generator version, dimension, variation and betas."""
        h = hashlib.sha256(f"exact-v{GENERATOR_VERSION}:{self.dim}:{self.variation}:".encode())
        h.update(np.ascontiguousarray(self.betas, dtype=np.float64).tobytes())
        return h.hexdigest()[:12]

    @property
    def provenance(self) -> dict:
        """How the reference is known: in closed form."""
        return {"method": "closed form (Poisson-binomial of independent linear limit states)",
                "generator": f"reliability.bench.exact v{GENERATOR_VERSION}"}

    def reference_probability(self, count: int) -> tuple[float, float]:
        """``P(count correct <= count)`` in closed form, and its standard error (0: exact).  The same
        signature as :meth:`reliability.bench.Case.reference_probability`."""
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 0 <= count <= self.n_samples:
            raise ReliabilityError(f"count={count!r}: must be an integer from 0 to {self.n_samples} (the number of "
                                   f"evaluation samples of case {self.name!r}).")
        m = self.n_samples
        if count >= m:
            return 1.0, 0.0
        # count correct <= c  <=>  at least m - c samples fail
        return float(poisson_binomial(special.ndtr(-self.betas))[m - int(count):].sum()), 0.0

    def reference_quantile(self, k: float) -> float:
        """The accuracy of the worst fraction ``k`` of chips: the smallest ``c / m`` with
        ``P(count <= c) >= k``."""
        if not 0 < k < 1:
            raise ReliabilityError(f"k={k!r}: a tail probability in (0, 1).")
        for c in range(self.n_samples + 1):
            if self.reference_probability(c)[0] >= k:
                return c / self.n_samples
        return 1.0  # pragma: no cover  (P(count <= m) = 1)


def exact_case(dim: int, probabilities, *, sigma: float = SIGMA, name: str | None = None) -> ExactCase:
    """A series system of ``len(probabilities)`` failure regions (one: the linear limit state) in a
    ``dim``-dimensional chip space; region ``j`` alone has probability ``probabilities[j]``.

    Parameters
    ----------
    dim : int
        Latent dimension, even, at least ``2 (m + 1)``.
    probabilities : sequence of float
        Each region's probability, in (0, 0.5).
    sigma : float
        The relative weight noise; ``beta_j sqrt(2) sigma <= 1`` must hold (``max|W|`` is 1).
    """
    ps = np.atleast_1d(np.asarray(probabilities, dtype=float))
    m = ps.size
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim % 2 or dim < 2 * (m + 1):
        raise ReliabilityError(f"dim={dim!r}: an even integer of at least {2 * (m + 1)} (two weights per input, "
                               f"one input per region and one more).")
    if m == 0 or not np.all((ps > 0) & (ps < 0.5)):
        raise ReliabilityError(f"probabilities={ps.tolist()}: one or more region probabilities in (0, 0.5).")
    betas = -special.ndtri(ps)
    if not (0 < sigma and float(betas.max()) * math.sqrt(2) * sigma <= 1):
        raise ReliabilityError(f"sigma={sigma!r}: needs 0 < sigma <= {1 / (math.sqrt(2) * betas.max()):.4g} for the "
                               f"rarest region (beta {betas.max():.3g}) with max|W| = 1.")
    n_in = dim // 2
    W = np.zeros((n_in, 2))
    W[:m, 1] = betas * math.sqrt(2) * sigma
    W[m, 1] = 1.0                        # pins max|W| on an input no sample uses
    X = np.zeros((m, n_in), dtype=np.float32)
    X[np.arange(m), np.arange(m)] = 1.0
    y = np.ones(m, dtype=np.int64)
    net = build_network([GraphNode("Gemm", "dense", ["x", "W", "b"], ["y"])], {"W": W, "b": np.zeros(2)},
                        input_name="x", input_shape=(n_in,), output_name="y", source="exact benchmark case")
    for a in (X, y, betas):
        a.flags.writeable = False
    kind = "linear" if m == 1 else f"series{m}"
    return ExactCase(name or f"{kind}-d{dim}", net, X, y, f"weight-gaussian:sigma={sigma:g}", betas)


#: The standard exact cases: name -> (dim, region probabilities).
EXACT_CASES = {
    "linear-d1e3-p1e-3": (1_000, (1e-3,)),
    "linear-d1e4-p1e-5": (10_000, (1e-5,)),
    "linear-d1e5-p1e-7": (100_000, (1e-7,)),
    "series4-d1e4-p1e-5": (10_000, (4e-6, 3e-6, 2e-6, 1e-6)),
    "series8-d1e5-p1e-6": (100_000, (2.5e-7, 2e-7, 1.5e-7, 1.2e-7, 1e-7, 8e-8, 6e-8, 4e-8)),
}
