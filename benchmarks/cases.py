"""Tail-accuracy cases built here, with brute-force references, beside the public case.

Every case is a network trained here with fixed seeds, an evaluation set and ``weight-gaussian``
variation (every Gemm/Conv weight gets independent N(0, (sigma * max|W_layer|)^2) noise, biases
exact), with a reference histogram of the number of correct samples per chip from plain Monte
Carlo over ``chips`` chips:

- ``digits_mlp16_s10``, ``digits_mlp48x24_s07``: ReLU MLPs (64-16-10, 64-48-24-10) trained with
  scikit-learn on the digits data (``reliability.data.evalset.digits_evalset``: the evaluation set
  is the same 597 samples the public case uses), sigma 0.10 and 0.07.
- ``digits_cnn_s05``: a LeNet-style CNN on the same digits (1 x 8 x 8): conv 3 x 3 (8 channels,
  pad 1) - relu - maxpool 2 - flatten - 32 - relu - 10, built with onnx.helper
  (``models.digits_cnn``) and trained with Adam through the toolkit's own backward pass
  (``models.train_adam``; weights only, biases stay 0), sigma 0.05.
- ``fmnist_mlp32_s03``: a 784-32-10 ReLU MLP trained with scikit-learn on the first 20,000
  Fashion-MNIST training images (``reliability.data.evalset.fashion_mnist``, pixels in [0, 1]);
  evaluation set: the first 600 test images; sigma 0.03.
- ``digits_mlp_pcm_1day``: the public case's 64-32-10 MLP on the PCM preset read one day after
  programming (drift, 1/f read noise, differential pairs: the non-Gaussian latent path).
- ``fmnist_lenet5_s05``: LeNet-5 (``models.lenet5``) trained with Adam through the toolkit on
  10,000 Fashion-MNIST images, evaluated on the first 200 test images, sigma 0.05.

The references are computed by an independent numpy implementation, not the toolkit's simulator
(numpy's own normals, float32, the network written out by hand from scikit-learn's coefficients or
the ONNX initializers), so they also check the simulator.  They are cached in ``benchmarks/.cache``
(``<name>.npz``; delete a file to recompute that case).

A reference is built in parts of ``part`` chips, each an independent stream (part 0 is
``PCG64(seed)``, part ``k`` is ``PCG64(SeedSequence((seed, k)))``) cached on its own, so a deeper
reference extends a shallower one and parts run in parallel (``--jobs``).  The estimators are
checked only where a reference holds at least 100 chips in the event (relative error <= 10 %):
about p = 1e-3 to 1e-4 for 10^6 chips; the full ``chips`` of each case (4 x 10^7 for the 64-16-10
MLP) reach about 1e-5 and take core-hours.  ``--export`` writes the cached parts as the shipped
case folders of ``reliability/bench/cases/`` (their ``case.json`` names the parts), which is what
``reliability bench`` runs.

The PCM case and the Fashion-MNIST LeNet-5 (:class:`SimulatedCase`) take their references from the
toolkit's own simulator: chip ``i`` keyed by ``(seed, i)``, part ``k`` the chips
``k * part .. (k + 1) * part - 1``.

The scikit-learn networks are trained with one BLAS thread: with two, the Fashion-MNIST MLP's
weights come out different in their last bits.  Parts record :meth:`BuiltCase.digest` (parts
without one are read as they are) and are refused for another network.
"""

from __future__ import annotations

import functools
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

CACHE = Path(__file__).resolve().parent / ".cache"


@dataclass(frozen=True)
class BuiltCase:
    """A case: :meth:`network` gives ``(Network, X, y)``; :meth:`reference` the brute-force histogram
    from ``chips`` chips drawn with ``np.random.Generator(np.random.PCG64(seed))``.

    Subclasses provide the trained network (:meth:`network`), the clean parameters of the
    independent implementation (:meth:`_clean`) and its forward pass for a batch of chips
    (:meth:`_chips_correct`).
    """

    name: str
    sigma: float
    chips: int
    seed: int = 12345
    #: chips per part of the reference: part 0 is drawn from ``PCG64(seed)``, part ``k >= 1`` from
    #: ``PCG64(SeedSequence((seed, k)))``; each part is cached on its own, so a deeper reference
    #: (more parts of the same size) extends a shallower one and its parts can run in parallel
    part: int = 2_000_000

    #: chips per batch of the reference (the random stream depends on it: changing it changes the
    #: reference chips) and the BLAS threads it uses (None: the library's default)
    CHIP_BATCH: ClassVar[int] = 500
    BLAS_THREADS: ClassVar[int | None] = None

    @property
    def variation(self) -> str:
        return f"weight-gaussian:sigma={self.sigma}"

    def network(self):
        """``(Network, X, y)``: the trained network in the toolkit and the evaluation set."""
        raise NotImplementedError

    def _meta(self) -> dict:
        """What the cache file records about the case besides the histogram."""
        return {"variation": self.variation}

    def digest(self) -> str:
        """SHA-256 of the trained network's parameters and the evaluation set, recorded with every
        reference part computed since it was introduced (earlier parts have none and are accepted):
        a part computed for other parameters is refused."""
        return _digest(*self._clean())

    def _clean(self):
        """``(X, y, params)``: evaluation set and the clean parameters :meth:`_chips_correct` uses."""
        raise NotImplementedError

    def _chips_correct(self, params, X, y, rng, B: int) -> np.ndarray:
        """Number of correct samples on each of ``B`` fresh chips drawn from ``rng`` (shape ``(B,)``)."""
        raise NotImplementedError


    def _part_path(self, k: int) -> Path:
        return CACHE / (f"{self.name}.npz" if k == 0 else f"{self.name}-part{k}.npz")

    def _part_chips(self, k: int) -> int:
        return min(self.part, self.chips - k * self.part)

    @property
    def parts(self) -> int:
        return -(-self.chips // self.part)

    def reference_part(self, k: int, progress: bool = True) -> np.ndarray:
        """Histogram of part ``k`` (computed and cached when missing)."""
        from threadpoolctl import threadpool_limits

        chips = self._part_chips(k)
        path = self._part_path(k)
        if path.exists():
            z = np.load(path)
            if "digest" in z.files and str(z["digest"]) != self.digest():
                raise RuntimeError(f"{path} was computed for another trained network than this process's "
                                   f"{self.name} (other library versions or CPU); delete the case's files in {CACHE} "
                                   "to recompute its reference.")
            if int(z["chips"]) == chips:
                return z["hist"]
        X, y, params = self._clean()
        rng = np.random.Generator(np.random.PCG64(self.seed if k == 0 else np.random.SeedSequence((self.seed, k))))
        hist = np.zeros(len(y) + 1, dtype=np.int64)
        t0 = time.perf_counter()
        batch, every = self.CHIP_BATCH, max(1, 200_000 // self.CHIP_BATCH)
        with threadpool_limits(self.BLAS_THREADS):
            for s0 in range(0, chips, batch):
                B = min(batch, chips - s0)
                hist += np.bincount(self._chips_correct(params, X, y, rng, B), minlength=len(y) + 1)
                if progress and (s0 // batch) % every == 0:
                    print(f"  {self.name} part {k}: {s0 + B:,} chips, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        if progress:
            print(f"  {self.name} part {k}: {chips:,} chips done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        CACHE.mkdir(exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, hist=hist, chips=chips, part=k, meta=json.dumps(self._meta()), digest=_digest(X, y, params))
        tmp.replace(path)
        return hist

    def reference(self, progress: bool = True, jobs: int = 1) -> np.ndarray:
        """Histogram: entry c = number of reference chips with exactly c samples correct (the sum of
        the :attr:`parts`; missing parts are computed, ``jobs`` at a time in separate processes)."""
        missing = [k for k in range(self.parts) if not self._part_path(k).exists()]
        if jobs > 1 and len(missing) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(jobs) as ex:
                list(ex.map(_compute_part, [(self, k) for k in missing]))
        return sum(self.reference_part(k, progress) for k in range(self.parts))


def _digest(X, y, params) -> str:
    """SHA-256 of a case's clean parameters and evaluation set (:meth:`BuiltCase.digest`)."""
    import hashlib

    def raw(v):
        if v is None:
            return b""
        if isinstance(v, (list, tuple)):
            return b"".join(raw(x) for x in v)
        if isinstance(v, dict):
            return b"".join(k.encode() + raw(v[k]) for k in sorted(v))
        return np.ascontiguousarray(v).tobytes()

    return hashlib.sha256(raw(params) + raw(X) + raw(y)).hexdigest()


def _compute_part(args):
    case, k = args
    case.reference_part(k)


@dataclass(frozen=True)
class MLPCase(BuiltCase):
    """A ReLU MLP (hidden sizes ``hidden``) trained with scikit-learn's ``MLPClassifier``
    (``random_state=0``, ``max_iter`` epochs of Adam) on ``data``: ``"digits"`` (train on the first
    1,200 samples, evaluate on the other 597) or ``"fashion-mnist"`` (train on the first 20,000
    training images, evaluate on the first 600 test images; 784 features in [0, 1])."""

    hidden: tuple = ()
    data: str = "digits"
    max_iter: int = 400

    def classifier(self):
        """``(fitted MLPClassifier, X_eval, y_eval)`` (trained once per process)."""
        return _sklearn_mlp(self.hidden, self.data, self.max_iter)

    def network(self):
        from reliability.cim import from_sklearn

        clf, X, y = self.classifier()
        return from_sklearn(clf), X, y

    def _meta(self) -> dict:
        meta = {"variation": self.variation, "hidden": list(self.hidden)}
        if self.data != "digits":
            meta["data"] = self.data
        return meta

    def _clean(self):
        # the MLP written out by hand from scikit-learn's coefficients: W (K, H) in x @ W orientation
        clf, X, y = self.classifier()
        Ws = [np.asarray(w, dtype=np.float32) for w in clf.coefs_]
        bs = [np.asarray(b, dtype=np.float32) for b in clf.intercepts_]
        sd = [np.float32(self.sigma * np.abs(w).max()) for w in Ws]
        return X, y, (Ws, bs, sd)

    def _chips_correct(self, params, X, y, rng, B):
        Ws, bs, sd = params
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
        return (np.argmax(h, axis=-1) == y[None, :]).sum(axis=1)


@dataclass(frozen=True)
class CNNCase(BuiltCase):
    """``models.digits_cnn`` (He init, ``init_seed``) trained by ``models.train_adam`` on the first
    1,200 digits (``epochs`` epochs, minibatches of ``minibatch``, learning rate ``lr``, order from
    ``train_seed``); evaluated on the other 597, inputs ``(n, 1, 8, 8)``."""

    epochs: int = 30
    minibatch: int = 64
    lr: float = 3e-3
    init_seed: int = 0
    train_seed: int = 0

    WEIGHTS: ClassVar[tuple] = ("C1", "F1", "F2")   # initializers of the analog layers, in execution order
    # small batches keep the conv activations in cache; single-threaded BLAS: the per-chip
    # products are small, and threaded OpenBLAS only adds synchronisation (a lot on a busy machine)
    CHIP_BATCH: ClassVar[int] = 25
    BLAS_THREADS: ClassVar[int | None] = 1

    def model(self):
        """``(onnx.ModelProto, X, y)``: the trained ONNX model and the evaluation set (trained once
        per process)."""
        return _digits_cnn(self.epochs, self.minibatch, self.lr, self.init_seed, self.train_seed, self.WEIGHTS)

    def network(self):
        from reliability.cim import load_onnx

        proto, X, y = self.model()
        return load_onnx(proto), X, y

    def _meta(self) -> dict:
        return {"variation": self.variation, "model": "digits_cnn", "epochs": self.epochs, "minibatch": self.minibatch,
                "lr": self.lr}

    def _clean(self):
        # the CNN written out by hand from the ONNX initializers, in ONNX layouts: conv C1
        # (out, in, kh, kw) with bias c1; Gemm F1, F2 with transB=1 (y = x @ F.T + f)
        from onnx import numpy_helper

        proto, X, y = self.model()
        p = {i.name: numpy_helper.to_array(i).astype(np.float32) for i in proto.graph.initializer}
        n = len(X)
        # im2col of the (clean, shared) input padded by 1: column kh * 3 + kw is the shifted slice
        # xp[h + kh, w + kw] for output pixel (h, w); rows ordered (dy, dx, sample, i, j) for output
        # pixel (2i + dy, 2j + dx), so that 2 x 2 max pooling is the maximum over the 4 row blocks
        xp = np.pad(X[:, 0], ((0, 0), (1, 1), (1, 1)))
        cols = np.empty((2, 2, n, 4, 4, 9), dtype=np.float32)
        for kh in range(3):
            for kw in range(3):
                cols[..., kh * 3 + kw] = xp[:, kh:kh + 8, kw:kw + 8].reshape(n, 4, 2, 4, 2).transpose(2, 4, 0, 1, 3)
        cols = cols.reshape(4, n * 16, 9)
        sd = {k: np.float32(self.sigma * np.abs(p[k]).max()) for k in self.WEIGHTS}
        return X, y, (cols, p, sd)

    def _chips_correct(self, params, X, y, rng, B):
        cols, p, sd = params
        n = len(X)
        C1, F1, F2 = (p[k] + sd[k] * rng.standard_normal((B,) + p[k].shape, dtype=np.float32) for k in self.WEIGHTS)
        # conv of all chips as one batched matmul per pooling offset, (n * 16, 9) @ (B, 9, 8) ->
        # (B, n * 16, 8); max pooling first, then bias and relu (exact in float32: rounding and
        # relu are monotone and the bias is constant over each pooling window)
        Wc = C1.reshape(B, 8, 9).transpose(0, 2, 1)
        h = np.matmul(cols[0], Wc)
        for d in range(1, 4):
            np.maximum(h, np.matmul(cols[d], Wc), out=h)
        h += p["c1"]
        np.maximum(h, 0, out=h)
        # flatten in NCHW order as ONNX Flatten does: (B, n, i * 4 + j, c) -> feature c * 16 + i * 4 + j
        f = h.reshape(B, n, 16, 8).transpose(0, 1, 3, 2).reshape(B, n, 128)
        h = np.matmul(f, F1.transpose(0, 2, 1)) + p["f1"]
        np.maximum(h, 0, out=h)
        out = np.matmul(h, F2.transpose(0, 2, 1)) + p["f2"]
        return (np.argmax(out, axis=-1) == y[None, :]).sum(axis=1)


def _mlp_data(data: str):
    """``(X_train, y_train, X_eval, y_eval)`` of an :class:`MLPCase`, features flattened."""
    if data == "digits":
        from reliability.data.evalset import digits_evalset

        return digits_evalset()
    if data == "fashion-mnist":
        from reliability.data.evalset import fashion_mnist

        def flat(X, n):
            return X[:n].reshape(n, -1).astype(np.float32)

        Xtr, ytr = fashion_mnist("train")
        Xte, yte = fashion_mnist("test")
        return flat(Xtr, 20_000), ytr[:20_000], flat(Xte, 600), yte[:600]
    raise ValueError(f"unknown data {data!r}")


@functools.cache
def _sklearn_mlp(hidden: tuple, data: str, max_iter: int):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from threadpoolctl import threadpool_limits

    Xtr, ytr, Xev, yev = _mlp_data(data)
    # one BLAS thread: with two, the 784-input networks' weights differ in their last bits from those
    # trained with one (the 784-128-10 one's clean accuracy 0.8883 against 0.8867), so a reference
    # would belong to the thread count of the process that computed it
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=hidden, max_iter=max_iter, random_state=0).fit(Xtr, ytr)
    return clf, Xev.astype(np.float32), yev.astype(np.int64)


@functools.cache
def _digits_cnn(epochs: int, minibatch: int, lr: float, init_seed: int, train_seed: int, weights: tuple):
    from models import digits_cnn, train_adam

    from reliability.data.evalset import digits_evalset

    Xtr, ytr, Xev, yev = digits_evalset()
    Xtr, Xev = Xtr.reshape(-1, 1, 8, 8), Xev.reshape(-1, 1, 8, 8)
    proto = train_adam(digits_cnn(init_seed), Xtr, ytr, epochs, minibatch, lr, train_seed, weights)
    return proto, Xev.astype(np.float32), yev.astype(np.int64)


@dataclass(frozen=True)
class SimulatedCase:
    """A case whose reference comes from the toolkit's own simulator (plain Monte Carlo,
    ``ChipSimulator.evaluate``, chip ``i`` keyed by ``(seed, i)``): the variation models an
    independent numpy implementation would have to re-derive (drift, read noise, stuck devices), and
    networks too costly to write out by hand.  Parts are ranges of chip indices, cached like
    :class:`BuiltCase`'s."""

    name: str
    chips: int
    part: int
    #: ``"pcm-1day"``: the public case's MLP on the PCM preset read a day after programming;
    #: ``"fmnist-lenet5"``: a LeNet-5 trained on Fashion-MNIST, weight-gaussian sigma
    kind: str
    sigma: float = 0.0
    n_eval: int = 200
    seed: int = 12345

    @property
    def parts(self) -> int:
        return -(-self.chips // self.part)

    def model(self):
        """``(onnx.ModelProto or None, Network, X, y)``."""
        from reliability.cim import load_onnx

        if self.kind == "pcm-1day":
            from reliability.bench import load_case

            pub = load_case("digits_mlp_s05")
            return None, pub.network, np.asarray(pub.X), np.asarray(pub.y)
        proto, X, y = _fmnist_lenet5(self.n_eval)
        return proto, load_onnx(proto), X, y

    @property
    def variation(self):
        from reliability.cim.spec import ChipSpec

        if self.kind == "pcm-1day":
            return ChipSpec(device="pcm", time_s=86400.0)
        return ChipSpec(device=f"weight-gaussian:sigma={self.sigma}")

    def digest(self) -> str:
        _, net, X, y = self.model()
        return _digest(X, y, [np.asarray(layer.weight) for layer in net.analog_layers])

    def _part_path(self, k: int) -> Path:
        return CACHE / f"{self.name}-sim-part{k}.npz"

    def reference_part(self, k: int, progress: bool = True) -> np.ndarray:
        from reliability.cim import ChipSimulator

        path = self._part_path(k)
        if path.exists():
            z = np.load(path)
            if str(z["digest"]) != self.digest():
                raise RuntimeError(f"{path} was computed for another network; delete it to recompute.")
            return z["hist"]
        _, net, X, y = self.model()
        lo, hi = k * self.part, min(self.chips, (k + 1) * self.part)
        t0 = time.perf_counter()
        res = ChipSimulator(net, self.variation).evaluate(X, y, chips=np.arange(lo, hi), rng=self.seed)
        hist = np.bincount(res.n_correct, minlength=len(y) + 1).astype(np.int64)
        if progress:
            print(f"  {self.name} part {k}: {hi - lo:,} chips in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        CACHE.mkdir(exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, hist=hist, chips=hi - lo, part=k, digest=self.digest())
        tmp.replace(path)
        return hist

    def reference(self, progress: bool = True, jobs: int = 1) -> np.ndarray:
        missing = [k for k in range(self.parts) if not self._part_path(k).exists()]
        if jobs > 1 and len(missing) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(jobs) as ex:
                list(ex.map(_compute_part, [(self, k) for k in missing]))
        return sum(self.reference_part(k, progress) for k in range(self.parts))


@functools.cache
def _fmnist_lenet5(n_eval: int):
    """LeNet-5 (``models.lenet5``) trained by ``models.train_adam`` on the first 10,000 Fashion-MNIST
    training images (3 epochs, minibatches of 64, learning rate 2e-3, pixels in [0, 1]); evaluated
    on the first ``n_eval`` test images."""
    from threadpoolctl import threadpool_limits

    from models import lenet5, train_adam
    from reliability.data.evalset import fashion_mnist

    Xtr, ytr = fashion_mnist("train")
    Xte, yte = fashion_mnist("test")
    Xtr = Xtr[:10_000].reshape(-1, 1, 28, 28).astype(np.float32)
    with threadpool_limits(1):
        proto = train_adam(lenet5(0), Xtr, ytr[:10_000].astype(np.int64), 3, 64, 2e-3, 0, ("C1", "C2", "F1", "F2", "F3"))
    return proto, Xte[:n_eval].reshape(-1, 1, 28, 28).astype(np.float32), yte[:n_eval].astype(np.int64)


def export(case, dest: Path, parts: int | None = None, probabilities=(1e-3, 1e-4, 1e-5)) -> Path:
    """Write ``case`` as a shipped case folder (``reliability/bench/cases/<name>/``): the network as
    ONNX, the evaluation set, the reference histogram of its first ``parts`` parts (default all that
    are cached) and ``case.json`` with the events (nearest ``probabilities`` with at least 100
    reference chips) and the reference's provenance."""
    from reliability.bench import default_events
    from reliability.cim import save_onnx

    # parts are independent chips (streams or index ranges of their own), so any set of them is a reference
    ks = list(range(parts)) if parts is not None else [k for k in range(case.parts) if case._part_path(k).exists()]
    if not ks:
        raise RuntimeError(f"{case.name}: no reference part is cached; build it first (python benchmarks/cases.py).")
    n_parts = len(ks)
    hist = sum(case.reference_part(k, progress=False) for k in ks)
    events = list(default_events(hist, probabilities))
    if not events:
        raise RuntimeError(f"{case.name}: {int(hist.sum()):,} reference chips reach none of the probabilities "
                           f"{probabilities} with 100 chips in the event; build more parts.")
    folder = Path(dest) / case.name
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(case, SimulatedCase):
        proto, net, X, y = case.model()
        chip = case.variation.to_dict()
        var = {"chip": chip}
        method = "plain Monte Carlo with the toolkit's simulator (ChipSimulator.evaluate), chip i keyed by (seed, i)"
    else:
        net, X, y = case.network()
        proto = case.model()[0] if isinstance(case, CNNCase) else None
        var = {"variation": "weight-gaussian", "sigma": case.sigma}
        method = ("plain Monte Carlo with an independent numpy implementation (benchmarks/cases.py), float32, "
                  "numpy PCG64 normals")
    if proto is not None:
        (folder / "model.onnx").write_bytes(proto.SerializeToString())
    else:
        save_onnx(net, folder / "model.onnx", overwrite=True)
    np.savez_compressed(folder / "data.npz", X=np.asarray(X, np.float32), y=np.asarray(y, np.int64))
    np.save(folder / "reference_hist.npy", np.asarray(hist, np.int64))
    logits = net.forward(np.asarray(X, np.float32))
    clean = float(np.mean(np.argmax(logits, axis=-1) == y))
    chips = int(hist.sum())
    meta = {**var, "clean_accuracy": clean, "n_eval": int(len(y)), "events": events,
            "reference": {"chips": chips, "seed": case.seed, "parts": ks, "part_chips": case.part, "method": method,
                          "network_sha256": case.digest(), "generator": "benchmarks/cases.py",
                          "rebuild": f"python benchmarks/cases.py --case {case.name} --build --export (parts {ks})"}}
    (folder / "case.json").write_text(json.dumps(meta, indent=1) + "\n")
    cdf = np.cumsum(hist) / chips
    lines = [f"# Benchmark case `{case.name}`", "",
             f"Built by `benchmarks/cases.py` ({type(case).__name__}); load it with "
             f"`reliability.bench.load_case({case.name!r})`.", "",
             f"- variation: {json.dumps(var)[:300]}",
             f"- clean accuracy {clean:.4f} on {len(y)} evaluation samples",
             f"- reference: {chips:,} chips (parts {ks} of {case.part:,} chips, seed {case.seed}); {method}",
             "- events (count c of n_correct <= c, reference probability, chips in the event): "
             + "; ".join(f"{c}: {cdf[c]:.3g} ({int(np.cumsum(hist)[c])})" for c in events), ""]
    (folder / "README.md").write_text("\n".join(lines))
    return folder


CASES = (
    MLPCase("digits_mlp16_s10", 0.10, 40_000_000, hidden=(16,)),
    MLPCase("digits_mlp48x24_s07", 0.07, 36_000_000, hidden=(48, 24)),
    CNNCase("digits_cnn_s05", 0.05, 2_000_000, part=500_000),
    MLPCase("fmnist_mlp32_s03", 0.03, 5_000_000, part=500_000, hidden=(32,), data="fashion-mnist", max_iter=60),
    SimulatedCase("digits_mlp_pcm_1day", 2_000_000, 250_000, "pcm-1day", n_eval=597),
    SimulatedCase("fmnist_lenet5_s05", 60_000, 20_000, "fmnist-lenet5", sigma=0.05, n_eval=200),
)


def thresholds(hist: np.ndarray, probs=(1e-3, 1e-4, 1e-5)) -> list[tuple[int, float]]:
    """For each target probability, the count threshold whose reference probability is nearest
    (in log) and has at least 100 reference chips in the event, with that probability
    (:func:`reliability.bench.default_events`, the rule of the shipped cases)."""
    from reliability.bench import default_events

    cdf = np.cumsum(hist) / hist.sum()
    return [(c, float(cdf[c])) for c in default_events(hist, probs)]


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="build the cases' brute-force references (parts cached in "
                                 "benchmarks/.cache) and export them as shipped case folders")
    ap.add_argument("--build", action="store_true", help="compute the missing reference parts (the default when "
                    "--export is not given)")
    ap.add_argument("--case", action="append", help="only this case (repeatable)")
    ap.add_argument("--jobs", type=int, default=1, help="parts computed in parallel processes")
    ap.add_argument("--parts", type=int, help="build (and export) only the first N parts of each reference")
    ap.add_argument("--export", action="store_true", help="write reliability/bench/cases/<name>/ from the cached parts")
    a = ap.parse_args()
    dest = Path(__file__).resolve().parents[1] / "reliability" / "bench" / "cases"
    for case in CASES:
        if a.case and case.name not in a.case:
            continue
        if a.export and not a.build:
            pass
        elif a.parts:
            for k in range(min(a.parts, case.parts)):
                case.reference_part(k)
        else:
            h = case.reference(jobs=a.jobs)
            print(case.name, "clean-ish mode", int(np.argmax(h)), thresholds(h))
        if a.export:
            print("exported", export(case, dest, a.parts))
