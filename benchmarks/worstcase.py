"""Worst-case search speed: LeNet-5 on 1,000 images, worst case at one bound (target < 60 s on 2 cores).

The network is the LeNet-5 of ``benchmarks/models.py`` trained here for ``epochs`` epochs of Adam on
Fashion-MNIST (``/usr/share/datasets/fashion-mnist``, via :func:`reliability.data.evalset.fashion_mnist`)
with the executor's own backward pass (weights only, biases stay 0); the trained weights are cached
in the temporary directory (``reliability-bench-lenet5-*.npz``) so that only the first run pays
for training.  Without Fashion-MNIST it falls back to scikit-learn's digits upsampled to 28 x 28.
The worst case is searched on the first 1,000 test images with ``weight-gaussian:sigma=0.01`` at
``bound = 3`` (every weight within +/- 0.03 max|W|, far smaller than typical variation), with the
library's defaults (restarts, iterations, random baseline of 100 chips, sensitivity ranking);
reported: wall seconds of the whole ``worst_case`` call, the clean, worst-case and random-chip
accuracies.
"""

from __future__ import annotations

import reliability  # noqa: F401  (first: it sets OPENBLAS_THREAD_TIMEOUT before numpy loads)

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import adam_weights, lenet5, with_weights  # noqa: E402

LENET5_WEIGHTS = ("C1", "C2", "F1", "F2", "F3")   # initializers of the analog layers, in order

TARGET_S = 60.0


def _data():
    from reliability.data.evalset import FASHION_MNIST_DIR, fashion_mnist

    if Path(FASHION_MNIST_DIR).exists():
        Xtr, ytr = fashion_mnist("train")
        Xte, yte = fashion_mnist("test")
        return "fashion-mnist", Xtr, ytr, Xte, yte
    from reliability.data.evalset import digits_evalset

    Xtr, ytr, Xte, yte = digits_evalset()

    def up(X):   # 8 x 8 -> 28 x 28: repeat pixels 3x, pad 2
        img = X.reshape(-1, 1, 8, 8).repeat(3, axis=2).repeat(3, axis=3)
        return np.pad(img, ((0, 0), (0, 0), (2, 2), (2, 2))).astype(np.float32)

    return "digits-28x28", up(Xtr), ytr, up(Xte), yte


def trained_lenet5(epochs: int = 2, batch: int = 128, lr: float = 2e-3, seed: int = 0):
    """LeNet-5 trained on the benchmark data (cached); returns ``(network, X_test, y_test, label)``."""
    from reliability.cim import load_onnx

    label, Xtr, ytr, Xte, yte = _data()
    cache = Path(tempfile.gettempdir()) / f"reliability-bench-lenet5-{label}-e{epochs}-s{seed}.npz"
    model = lenet5(seed)
    net = load_onnx(model)
    if cache.exists():
        with np.load(cache) as z:
            weights = [z[f"w{i}"] for i in range(len(net.analog_layers))]
    else:
        weights = adam_weights(net, Xtr, ytr, epochs, batch, lr, seed)
        np.savez(cache, **{f"w{i}": w for i, w in enumerate(weights)})
    return load_onnx(with_weights(model, weights, LENET5_WEIGHTS)), Xte, yte, label


def run(n_images: int = 1000, bound: float = 3.0, sigma: float = 0.01) -> list[dict]:
    from reliability.worstcase import worst_case

    net, X, y, label = trained_lenet5()
    X, y = X[:n_images], y[:n_images]
    worst_case(net, X[:32], y[:32], f"weight-gaussian:sigma={sigma}", bounds=[bound], iterations=2, restarts=2,
               random_chips=2, sensitivity=False)   # warm-up (first-call costs of numpy/onnx paths)
    t0 = time.perf_counter()
    res = worst_case(net, X, y, f"weight-gaussian:sigma={sigma}", bounds=[bound], rng=0)
    sec = time.perf_counter() - t0
    b = res.bounds[0]
    top = max(res.sensitivity.layers, key=lambda r: r["share"]) if res.sensitivity else None
    return [{"name": "worstcase-lenet5", "seconds": sec, "target_s": TARGET_S,
             "clean_accuracy": b.clean_accuracy, "worst_accuracy": b.accuracy,
             "random_min_accuracy": b.random_min_accuracy, "restarts": b.restarts, "iterations": b.iterations,
             "detail": (f"lenet-5 ({label}), {n_images} images, weight-gaussian {sigma:g}, L-inf bound {bound:g} "
                        f"sigma: clean {b.clean_accuracy:.3f}, worst case {b.accuracy:.3f} ({b.restarts} restarts x "
                        f"{b.iterations} iterations), min of {b.random_chips} random chips in the box "
                        f"{b.random_min_accuracy:.3f}" + (f"; largest share: {top['name']} {top['share']:.2f}"
                                                         if top else ""))}]


if __name__ == "__main__":
    for r in run():
        print(r)
