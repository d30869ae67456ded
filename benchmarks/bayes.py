"""Bayesian device fit: seconds for the default fit of a 10,000-row PCM-like campaign.

The campaign is that of ``benchmarks/run.py``'s ``fit-100k`` (pcm preset with stuck-at faults and
chip gain; 4 chips x 13 levels x 3 read times, device ids) with 64 devices per level and chip:
9,984 rows.  ``fit_device_bayes`` runs with its defaults (2 chains, 1,000 tuning + 1,000 draws each,
``cores = min(chains, 2)``), so the time includes building the model, compiling it (the PyTensor
cache of earlier runs is used, as on any machine after the first fit), tuning, sampling and the
convergence checks.  ``import pymc`` is timed separately (once per process).  Target: 60 s on 2
cores.

Run ``python benchmarks/bayes.py``; ``run()`` returns the rows for ``benchmarks/run.py``.
"""

from __future__ import annotations

import time

import numpy as np


def campaign(n_devices: int = 64, seed: int = 0):
    from reliability.data import simulate_campaign
    from reliability.devices import ChipGain, StuckAt
    from reliability.devices.presets import get_preset

    truth = get_preset("pcm").with_(stuck=StuckAt(0.01, 0.005, 0.0, 25.0, 0.0, 0.3), chip_gain=ChipGain(0.03))
    return simulate_campaign(truth, np.linspace(0, 25, 13), [20.0, 3600.0, 86400.0], n_chips=4, n_devices=n_devices,
                             rng=seed)


def run(seed: int = 0) -> list[dict]:
    t0 = time.perf_counter()
    import pymc  # noqa: F401  (import time reported on its own)

    t_import = time.perf_counter() - t0
    from reliability.fit.bayes import FitFailedError, fit_device_bayes

    df = campaign(seed=seed)
    t0 = time.perf_counter()
    try:
        res = fit_device_bayes(df, rng=seed)
        ok, d, msg = True, res.diagnostics, res.message
    except FitFailedError as exc:
        res = exc.result
        ok, d, msg = False, exc.result.diagnostics, str(exc)
    secs = time.perf_counter() - t0
    return [{
        "name": "fit-bayes-10k", "rows": df.height, "seconds": secs, "target_s": 60.0, "import_s": t_import,
        "sample_s": res.seconds["sample"], "success": ok, "max_r_hat": d["max_r_hat"], "min_ess_bulk": d["min_ess_bulk"],
        "min_ess_tail": d["min_ess_tail"], "divergences": d["divergences"], "mean_tree_size": d["mean_tree_size"],
        "message": msg,
    }]


if __name__ == "__main__":
    for r in run():
        print(r)
