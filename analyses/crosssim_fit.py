"""Which variation family describes the CrossSim pulse-ramp measurements, judged on the tails?

Fits the bundled set and reset ramps (Sandia CrossSim, BSD-3; read current at 0.1 V, one column
per ramp repetition, the pulse's mean over repetitions taken as its target), prints the ranked
candidates and writes QQ figures and the chosen models.

    python analyses/crosssim_fit.py [--out analyses/out]
"""

import argparse
from pathlib import Path

from reliability.data import load_bundled
from reliability.fit import fit_device
from reliability.report import plot_fit_qq


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="analyses/out")
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("crosssim-set", "crosssim-reset"):
        res = fit_device(load_bundled(name), name=name)
        print(f"\n== {name}\n{res.summary()}")
        print(res.to_polars().select("candidate", "bic", "ks", "ad", "tail_low_ratio", "tail_high_ratio", "tails_ok"))
        plot_fit_qq(res, out / f"{name}-qq.png")
        res.model.save(out / f"{name}.json", overwrite=True)
        print(f"wrote {out / (name + '-qq.png')} and {out / (name + '.json')}")


if __name__ == "__main__":
    main()
