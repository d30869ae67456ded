"""nvCiM core speed: simulated chips per second against the bare float32 matrix products.

For each network the bare products (the same matrix shapes, one weight matrix per chip, float32,
ReLU between layers) and the simulator (``ChipSimulator.evaluate``: draw every device of every
chip, map, run the network, accuracy and loss) are timed alternately; each figure is the best of
``repeats`` rounds.  Reported: milliseconds per chip and the ratio simulator / bare products.
"""

from __future__ import annotations

import reliability  # noqa: F401  (first: it sets OPENBLAS_THREAD_TIMEOUT before numpy loads)

import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import lenet5, mlp_784_256_10  # noqa: E402

from reliability.cim import load_onnx  # noqa: E402
from reliability.cim.simulate import ChipSimulator  # noqa: E402
from reliability.cim.spec import parse_variation  # noqa: E402


def _best(fn, repeats):
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bare_mlp(X, Ws, chips):
    for s in range(chips):
        h = X
        for j, W in enumerate(Ws):
            h = h @ W[s % W.shape[0]]
            if j < len(Ws) - 1:
                np.maximum(h, 0, out=h)


def run(chips: int = 64, repeats: int = 5) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    net = load_onnx(mlp_784_256_10())
    X = rng.random((1000, 784), dtype=np.float32)
    y = rng.integers(0, 10, 1000)
    # one distinct weight matrix per chip, as the simulator has (cycling a few matrices would keep
    # them in cache and understate the bare time by about a quarter)
    Ws = [rng.standard_normal((chips,) + layer.weight.shape, dtype=np.float32) for layer in net.analog_layers]
    from reliability.cim.spec import MappingSpec

    for name, label, var in (("cim-mlp-wgauss", "mlp 784-256-10, weight-gaussian 0.1", "weight-gaussian:sigma=0.1"),
                             ("cim-mlp-pcm", "mlp 784-256-10, PCM preset, t = 1 day, differential pairs", "pcm"),
                             ("cim-mlp-pcm-offset", "mlp 784-256-10, PCM preset, t = 1 day, offset mapping (1 device)",
                              "pcm-offset")):
        spec = parse_variation(var.replace("-offset", "")).with_(time_s=86400.0 if var.startswith("pcm") else 0.0)
        if var == "pcm-offset":
            spec = spec.with_(mapping=MappingSpec(scheme="offset"))
        sim = ChipSimulator(net, spec)
        sim.evaluate(X, y, 8, rng=0)  # warm-up (numba compile, caches)
        t_sim, t_bare = np.inf, np.inf
        for r in range(repeats):
            t_bare = min(t_bare, _best(lambda: bare_mlp(X, Ws, chips), 1))
            t_sim = min(t_sim, _best(lambda: sim.evaluate(X, y, chips, rng=r), 1))
        rows.append({"name": name, "benchmark": label, "ms_per_chip": 1e3 * t_sim / chips,
                     "bare_ms_per_chip": 1e3 * t_bare / chips, "ratio": t_sim / t_bare, "target_ratio": 2.0})
    # LeNet-5 on 1,000 28 x 28 inputs: time per chip and peak memory of the evaluation
    net = load_onnx(lenet5())
    X = rng.random((1000, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 1000)
    sim = ChipSimulator(net, parse_variation("weight-gaussian:sigma=0.1").with_(memory_budget_MB=2048))
    sim.evaluate(X, y, 2, rng=0)
    t = np.inf
    for r in range(repeats):      # timed without tracing (tracemalloc slows allocations)
        t0 = time.perf_counter()
        res = sim.evaluate(X, y, 16, rng=1 + r)
        t = min(t, time.perf_counter() - t0)
    tracemalloc.start()
    sim.evaluate(X, y, 16, rng=1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rows.append({"name": "cim-lenet5", "benchmark": f"lenet-5, 1,000 inputs, weight-gaussian 0.1 (chunk {res.chunk_size})",
                 "ms_per_chip": 1e3 * t / 16, "bare_ms_per_chip": float("nan"), "ratio": float("nan"),
                 "target_ratio": None, "peak_MB": peak / 2**20,
                 "max_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    return rows


if __name__ == "__main__":
    for r in run():
        print(r)
