"""Tail-accuracy cases built here, with brute-force references, beside the public case.

Each case is a small ReLU MLP trained with scikit-learn (fixed seeds) on the digits data
(``reliability.data.evalset.digits_evalset``: the evaluation set is the same 597 samples the public
case uses) under ``weight-gaussian`` variation, and a reference histogram of the number of correct
samples per chip from plain Monte Carlo over ``chips`` chips, computed by an independent numpy
implementation (numpy's own normals, the MLP written out from scikit-learn's coefficients), so
the reference also checks the toolkit's simulator.  References are cached in ``benchmarks/.cache`` (delete it to recompute).

The references cost minutes (about 10^6 to 4 x 10^6 chips each), so the estimators are checked
against them only where the reference itself has at least 100 chips in the event (relative error
<= 10 %): around p = 1e-3 to 1e-4 for these sizes.  ``python benchmarks/cases.py`` builds them.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE = Path(__file__).resolve().parent / ".cache"


@dataclass(frozen=True)
class BuiltCase:
    name: str
    hidden: tuple
    sigma: float
    chips: int
    seed: int = 12345

    def classifier(self):
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        from reliability.data.evalset import digits_evalset

        Xtr, ytr, Xev, yev = digits_evalset()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = MLPClassifier(hidden_layer_sizes=self.hidden, max_iter=400, random_state=0).fit(Xtr, ytr)
        return clf, Xev.astype(np.float32), yev.astype(np.int64)

    def network(self):
        from reliability.cim import from_sklearn

        clf, X, y = self.classifier()
        return from_sklearn(clf), X, y

    @property
    def variation(self) -> str:
        return f"weight-gaussian:sigma={self.sigma}"

    def reference(self, progress: bool = True) -> np.ndarray:
        """Histogram: entry c = number of reference chips with exactly c samples correct."""
        path = CACHE / f"{self.name}.npz"
        if path.exists():
            z = np.load(path)
            if int(z["chips"]) == self.chips:
                return z["hist"]
        # an independent implementation of the case (not the toolkit's simulator): numpy's own
        # normals, the MLP written out by hand from scikit-learn's coefficients
        clf, X, y = self.classifier()
        Ws = [np.asarray(w, dtype=np.float32) for w in clf.coefs_]
        bs = [np.asarray(b, dtype=np.float32) for b in clf.intercepts_]
        sd = [np.float32(self.sigma * np.abs(w).max()) for w in Ws]
        rng = np.random.Generator(np.random.PCG64(self.seed))
        hist = np.zeros(len(y) + 1, dtype=np.int64)
        t0 = time.perf_counter()
        batch = 500
        for s0 in range(0, self.chips, batch):
            B = min(batch, self.chips - s0)
            h = None
            for j, (w, b, s) in enumerate(zip(Ws, bs, sd)):
                noisy = w + s * rng.standard_normal((B,) + w.shape, dtype=np.float32)
                if h is None:   # first layer: one GEMM for all chips, X (n, K) @ (K, B * H)
                    K, H = w.shape
                    h = (X @ noisy.transpose(1, 0, 2).reshape(K, B * H)).reshape(len(X), B, H).transpose(1, 0, 2)
                    h = np.ascontiguousarray(h) + b
                else:
                    h = np.matmul(h, noisy) + b
                if j < len(Ws) - 1:
                    np.maximum(h, 0, out=h)
            correct = (np.argmax(h, axis=-1) == y[None, :]).sum(axis=1)
            hist += np.bincount(correct, minlength=len(y) + 1)
            if progress and (s0 // batch) % 400 == 0:
                print(f"  {self.name}: {s0 + B:,} chips, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        CACHE.mkdir(exist_ok=True)
        np.savez(path, hist=hist, chips=self.chips, meta=json.dumps({"variation": self.variation,
                                                                     "hidden": list(self.hidden)}))
        return hist


CASES = (
    BuiltCase("digits_mlp16_s10", (16,), 0.10, 2_000_000),
    BuiltCase("digits_mlp48x24_s07", (48, 24), 0.07, 2_000_000),
)


def thresholds(hist: np.ndarray, probs=(1e-3, 1e-4)) -> list[tuple[int, float]]:
    """For each target probability, the count threshold whose reference probability is nearest
    (in log) and has at least 100 reference chips in the event."""
    cum = np.cumsum(hist)
    cdf = cum / hist.sum()
    ok = np.flatnonzero(cum >= 100)
    out = []
    for p in probs:
        if not ok.size:
            continue
        c = int(ok[np.argmin(np.abs(np.log(cdf[ok]) - np.log(p)))])
        out.append((c, float(cdf[c])))
    return out


if __name__ == "__main__":
    for case in CASES:
        h = case.reference()
        print(case.name, "clean-ish mode", int(np.argmax(h)), thresholds(h))
