"""Many chips at once: draw every device of every analog layer per chip, evaluate the network
batched over chips, with a memory budget, chip-indexed randomness and gradients.

Chip ``i`` draws from ``Generator(PCG64(SeedSequence(seed, spawn_key=(i,))))`` (the ``i``-th child
of ``SeedSequence(seed)``) in a fixed order, so its noise, and its accuracy, depend only on
``(seed, i)``: not on the chunk size, the thread count or which other chips are evaluated.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from reliability.cim._kernels import correct_and_loss
from reliability.cim.mapping import LayerMapping, Periphery
from reliability.cim.graph import margin, softmax_cross_entropy
from reliability.cim.spec import ChipSpec, parse_variation
from reliability.devices.batched import chip_keys
from reliability.devices.prepared import PreparedArray
from reliability.devices.verify import acceptance as verify_acceptance
from reliability.errors import ReliabilityError
from reliability.streams import as_seed, chip_rng

__all__ = ["ChipSimulator", "SimulationResult", "ChipDraw", "chip_rng"]


def traced_peak(fn) -> int:
    """Peak bytes Python allocates while ``fn()`` runs, above what was allocated before
    (tracemalloc; left running if it already was)."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        if not was_tracing:
            tracemalloc.stop()


_PREP_CACHE = 8   # posterior draws whose prepared arrays are kept
_CPU_CHUNK = 256  # most chips evaluated together by the numpy backend


@dataclass
class ChipDraw:
    """One chip: effective weights per layer, and what the periphery and gradients need."""

    index: int
    weights: list
    levels: list | None = None
    alpha: list | None = None
    conductances: list | None = None
    stack: list | None = field(default=None, repr=False)   # the chunk's stacked weights holding this chip
    slot: int = -1


@dataclass(frozen=True)
class SimulationResult:
    """Accuracy and loss of each simulated chip (chips on axis 0)."""

    chip: np.ndarray
    accuracy: np.ndarray
    loss: np.ndarray
    n_correct: np.ndarray
    n_samples: int
    seed: int
    seconds: float
    chunk_size: int
    complete: bool = True
    diagnostics: dict = field(default_factory=dict)
    message: str = ""

    def to_polars(self):
        """The chips as a polars DataFrame (chip, accuracy, loss, n_correct)."""
        import polars as pl

        return pl.DataFrame({"chip": self.chip.astype(np.int64), "accuracy": self.accuracy.astype(np.float64),
                             "loss": self.loss.astype(np.float64), "n_correct": self.n_correct.astype(np.int64)})

    def summary(self) -> str:
        a = self.accuracy
        if a.size == 0:
            return "no chips evaluated"
        q = np.percentile(a, [0, 1, 50])
        return (f"{a.size} chips x {self.n_samples} samples in {self.seconds:.2f} s: accuracy mean {a.mean():.4f} "
                f"(std {a.std(ddof=1) if a.size > 1 else 0.0:.4f}), min {q[0]:.4f}, 1 % {q[1]:.4f}, median {q[2]:.4f}"
                + ("" if self.complete else " [INTERRUPTED: partial result]"))


class ChipSimulator:
    """A network on simulated chips described by a :class:`~reliability.cim.spec.ChipSpec`.

    Parameters
    ----------
    network : reliability.cim.Network
    variation : ChipSpec, shorthand string or chip file (see :func:`parse_variation`)
    threads : int, optional
        Threads drawing chips in parallel (default: the CPU count); results do not depend on it.
    verify_mask : list of boolean arrays, optional
        With ``programming.write_verify`` set, the weights whose devices are write-verified, one
        ``(K, N)`` array per analog layer (selective write-verify); default: every weight.  A chip
        drawn with any mask is the same chip (same random numbers) as without write-verify, its
        verified devices' programming errors pulled into the band.
    backend : str
        Where the products run: ``"numpy"`` (default), or ``"torch"`` (PyTorch on CUDA when
        available, else the CPU; ``"torch:cpu"``, ``"torch:cuda[:N]"`` to choose), the optional
        ``[torch]`` extra (:mod:`reliability.cim.graph.torch_exec`).  The chips are drawn by the
        numpy core either way (the same chips); the torch forward agrees with numpy's to float32
        rounding.  DAC/ADC and gradients run on the numpy backend only.
    """

    def __init__(self, network, variation, threads: int | None = None, verify_mask=None, backend: str = "numpy"):
        self.network = network
        self.spec: ChipSpec = parse_variation(variation)
        self.device = self.spec.device_model()
        self.dtype = np.dtype(self.spec.dtype)
        self.maps = [LayerMapping(layer, self.device, self.spec.mapping) for layer in network.analog_layers]
        self.verify_mask = self._check_verify_mask(verify_mask)
        self.prepared = self._prepare(self.device)
        self.spares = int(self.spec.mapping.spare_cols)
        if self.spares:
            st = self.device.stuck
            if st is None or (st.p_low == 0 and st.p_high == 0):
                raise ReliabilityError("mapping.spare_cols repairs stuck devices, and this device model has no stuck-at "
                                       "faults; set spare_cols = 0 or use a model with stuck faults.")
            if self.spec.periphery.drift_compensation:
                raise ReliabilityError("mapping.spare_cols together with periphery.drift_compensation is not supported; "
                                       "switch one of them off.")
        # a posterior device model: each chip first draws its parameter set (draw index) from its
        # own generator; arrays prepared per draw are cached (a few, they hold per-device arrays)
        self.n_posterior = int(getattr(self.device, "n_draws", 0) or 0)
        self._prep_cache: OrderedDict = OrderedDict()
        self._prep_lock = threading.Lock()
        self._local = threading.local()
        self.periphery = Periphery(self.spec.periphery, self.maps, self.spec.mapping.tile_rows)
        self.threads = int(threads or os.cpu_count() or 1)
        self._calibrated_on = None
        self.t_ref = float(self.device.drift.t0_s) if self.device.drift is not None else 0.0
        self._keep_levels = bool(self.spec.periphery.adc_bits)
        self._probe: dict = {}    # input shape -> traced bytes per chip and sample (chunk sizing)
        self.backend = str(backend)
        self._torch = self._make_backend(self.backend)
        self._batch_counts = self._batch_plan()

    def __getstate__(self):   # pickled for Dask workers: the lock and the draw cache stay behind
        state = self.__dict__.copy()
        state["_prep_lock"] = None
        state["_prep_cache"] = OrderedDict()
        state["_local"] = None
        state["_torch"] = None      # device handles: the torch forward is rebuilt where the simulator lands
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._prep_lock = threading.Lock()
        self._local = threading.local()
        self._torch = self._make_backend(getattr(self, "backend", "numpy"))

    def _check_verify_mask(self, mask):
        if mask is None:
            return None
        if not self.spec.write_verify:
            raise ReliabilityError("verify_mask needs programming.write_verify > 0 in the chip specification "
                                   "(the tolerance the selected devices are verified to).")
        mask = list(mask)
        if len(mask) != len(self.maps):
            raise ReliabilityError(f"verify_mask needs one array per analog layer ({len(self.maps)}); got {len(mask)}.")
        out = []
        for m, a in zip(self.maps, mask):
            a = np.asarray(a)
            if a.shape != (m.K, m.N) or a.dtype != bool:
                raise ReliabilityError(f"verify_mask for layer {m.layer.name} must be a boolean ({m.K}, {m.N}) array; "
                                       f"got {a.dtype} {a.shape}.")
            out.append(a)
        return out

    def acceptance(self, model) -> list:
        """Per analog layer, the write-verify :class:`~reliability.devices.verify.Acceptance` of
        device model ``model`` at this chip's targets (None for a layer without verified devices,
        or everywhere when write-verify is off).  The band is ``write_verify x (g_max - g_min)``."""
        tol = self.spec.write_verify
        if not tol:
            return [None] * len(self.maps)
        out = []
        for li, m in enumerate(self.maps):
            mask = None if self.verify_mask is None else np.broadcast_to(self.verify_mask[li], m.targets.shape)
            out.append(verify_acceptance(model.programming, m.targets, tol * (m.g_max - m.g_min), model.floor, mask))
        return out

    def _prepare(self, model) -> list[PreparedArray]:
        return [PreparedArray(model, m.targets, self.dtype, accept=a) for m, a in zip(self.maps, self.acceptance(model))]

    # ------------------------------------------------------------------ chips
    @property
    def n_devices(self) -> int:
        return sum(m.n_devices for m in self.maps)

    def quantized_weights(self) -> list[np.ndarray]:
        """The weights the chip would hold with noiseless devices (mapping round trip)."""
        return [m.Wq for m in self.maps]

    def _buffer(self, li: int, p, chips: int = 0) -> np.ndarray:
        """A per-thread scratch array for layer ``li``'s conductances, of one chip or of a block of
        ``chips`` (reused: no fresh pages to fault in for every chip)."""
        bufs = getattr(self._local, "bufs", None)
        if bufs is None:
            bufs = self._local.bufs = {}
        shape = ((chips,) if chips else ()) + p.shape
        b = bufs.get((li, chips))
        if b is None or b.shape != shape or b.dtype != p.dtype:
            b = bufs[(li, chips)] = np.empty(shape, dtype=p.dtype)
        return b

    def prepared_for(self, j: int) -> list[PreparedArray]:
        """The per-layer prepared arrays of posterior draw ``j`` (cached, least recently used out)."""
        with self._prep_lock:
            got = self._prep_cache.get(j)
            if got is not None:
                self._prep_cache.move_to_end(j)
                return got
        got = self._prepare(self.device.model_at(j))
        with self._prep_lock:
            self._prep_cache[j] = got
            while len(self._prep_cache) > _PREP_CACHE:
                self._prep_cache.popitem(last=False)
        return got

    def draw_chip(self, i: int, seed: int, keep_conductances: bool = False, out: list | None = None) -> ChipDraw:
        """Draw chip ``i``: every device of every layer, in a fixed order from ``chip_rng(seed, i)``
        (with a posterior device model, the chip's draw index comes first from the same generator).

        ``out``: optional per-layer (K, N) arrays that receive the effective weights (no copies)."""
        rng = chip_rng(seed, i)
        prepared = self.prepared
        if self.n_posterior:
            prepared = self.prepared_for(int(self.device.draw_index(rng)))
        weights, levels, alphas, gs = [], [], [], []
        comp = self.spec.periphery.drift_compensation
        for li, (m, p) in enumerate(zip(self.maps, prepared)):
            dest = None if out is None else out[li]
            direct = (dest is not None and m.kind == "weight" and m.targets.shape[0] == 1 and not keep_conductances
                      and not comp and not self.spares)
            if not comp and p.fused_ok(self.spec.time_s):       # program + read in one pass
                buf = dest.reshape(p.shape) if direct else (None if keep_conductances else self._buffer(li, p))
                g = p.sample_fused(self.spec.time_s, rng=rng, out=buf)[None]
            else:
                prog = p.program(rng, out=dest.reshape(p.shape) if direct else None)
                g = p.read(prog, self.spec.time_s, rng)[None]
                if self.spares:           # spare devices for the chip's worst columns, drawn after the layer's own
                    spare = p.read(p.program(rng), self.spec.time_s, rng)[None]
                    stuck = prog.stuck_mask if prog.stuck_mask is not None else np.zeros(p.shape, dtype=bool)
                    g = m.remap_spares(g, stuck[None], spare, self.spares)
            # the slice levels are the conductances: taken before a rescale in place overwrites them
            lv = m.slice_levels(g)[0].astype(self.dtype, copy=True) if self._keep_levels else None
            if direct and g.base is not None and np.shares_memory(g, dest):
                np.multiply(dest, self.dtype.type(m.coef[0, 0]), out=dest)      # in place: W = g * max|W|
                W = dest
            elif dest is not None and g.dtype == self.dtype:
                W = m.decode(g, out=dest[None])[0]                 # straight into the chunk's slot
            else:
                W = m.decode(g)[0].astype(self.dtype, copy=False)
                if dest is not None:
                    dest[...] = W
                    W = dest
            alpha = 1.0
            if comp:
                W_ref = m.decode(p.read(prog, self.t_ref, rng)[None])[0]
                den = np.abs(W.sum(axis=0)).sum()
                alpha = float(np.abs(W_ref.sum(axis=0)).sum() / den) if den > 0 else 1.0
                W *= self.dtype.type(alpha)   # in place: W may be a slot of the stacked chunk
            weights.append(W)
            alphas.append(alpha)
            levels.append(lv)
            gs.append(g[0] if keep_conductances else None)
        return ChipDraw(int(i), weights, levels if self._keep_levels else None, alphas if comp else None,
                        gs if keep_conductances else None)

    def _batch_plan(self) -> list[int] | None:
        """Per analog layer, the generator keys a chip's devices consume when every layer can be
        drawn for a block of chips at once (:meth:`PreparedArray.sample_batch`), else None."""
        if self.n_posterior or self.spec.periphery.drift_compensation or self.spares:
            return None
        counts = [p.batch_keys(self.spec.time_s) for p in self.prepared]
        return None if any(c is None for c in counts) else counts

    def _draw_batch(self, chips: np.ndarray, seed: int, stacked: list, objects: bool = True):
        """Draw a block of chips by compiled loops over chips (the same chips as :meth:`draw_chip`,
        bit for bit): the chips' keys at once, then each layer's devices in blocks of a few hundred
        kilobytes (kept in cache while they are decoded), blocks spread over the threads.  Returns
        the chips' :class:`ChipDraw` s, or with ``objects=False`` the stacked weights and slice
        levels (per layer; levels None without an ADC)."""
        counts = self._batch_counts
        keys = chip_keys(seed, chips, sum(counts))
        S = len(chips)
        offsets = np.cumsum([0] + counts)
        levels = ([np.empty((S,) + (m.targets.shape[1] if m.kind == "device" else 1, m.K, m.N), dtype=self.dtype)
                   for m in self.maps] if self._keep_levels else None)
        t = self.spec.time_s

        def block(a: int, b: int) -> None:
            for li, (m, p) in enumerate(zip(self.maps, self.prepared)):
                k = np.ascontiguousarray(keys[a:b, offsets[li]:offsets[li + 1]])
                dest = stacked[li][a:b]
                if m.kind == "weight" and m.targets.shape[0] == 1:      # the draws are the weights, rescaled
                    g = p.sample_batch(k, t, dest.reshape((b - a,) + p.shape))
                    if levels is not None:
                        levels[li][a:b] = m.slice_levels(g)
                    np.multiply(dest, self.dtype.type(m.coef[0, 0]), out=dest)
                else:
                    g = p.sample_batch(k, t, self._buffer(li, p, b - a))
                    # einsum (several slices, and the slice levels) contracts through BLAS, whose
                    # rounding depends on the batch: chip by chip, as draw_chip, for the same bits
                    one = levels is not None or np.prod(m.targets.shape[1:3]) != 2
                    for c0, c1 in [(0, b - a)] if not one else [(c, c + 1) for c in range(b - a)]:
                        if levels is not None:
                            levels[li][a + c0:a + c1] = m.slice_levels(g[c0:c1])
                        m.decode(g[c0:c1], out=dest[c0:c1])

        step = max(1, min(256, (1 << 18) // max(1, max(p.size for p in self.prepared))))
        bounds = [(a, min(S, a + step)) for a in range(0, S, step)]
        if self.threads <= 1 or len(bounds) == 1:
            for a, b in bounds:
                block(a, b)
        else:
            with ThreadPoolExecutor(self.threads) as ex:
                list(ex.map(lambda ab: block(*ab), bounds))
        if not objects:                  # the stacked weights and levels (evaluate needs no more)
            return stacked, levels
        return [ChipDraw(int(i), [w[k] for w in stacked], None if levels is None else [lv[k] for lv in levels],
                         stack=stacked, slot=k) for k, i in enumerate(chips)]

    def draw_chips(self, chips, seed: int, keep_conductances: bool = False, out: list | None = None) -> list[ChipDraw]:
        """Draw several chips (in parallel threads); their weights share one stacked array per layer
        (``out``: per-layer (>= n_chips, K, N) arrays to hold them, else fresh ones)."""
        chips = [int(c) for c in chips]
        if out is not None:
            stacked = [o[:len(chips)] for o in out]
        else:
            stacked = [np.empty((len(chips), m.K, m.N), dtype=self.dtype) for m in self.maps]
        if self._batch_counts is not None and not keep_conductances and chips:
            return self._draw_batch(np.array(chips, dtype=np.int64), int(seed), stacked)

        def one(k):
            d = self.draw_chip(chips[k], seed, keep_conductances, out=[w[k] for w in stacked])
            d.stack, d.slot = stacked, k
            return d

        if self.threads <= 1 or len(chips) == 1:
            return [one(k) for k in range(len(chips))]
        with ThreadPoolExecutor(self.threads) as ex:
            return list(ex.map(one, range(len(chips))))

    # ------------------------------------------------------------------ forward
    def calibrate(self, x) -> None:
        """Set DAC/ADC ranges from the inputs each analog layer receives on ``x`` with clean weights."""
        if not self.periphery.active:
            return
        recorded = [None] * len(self.maps)

        def rec(layer, X, W):
            recorded[layer.index] = np.asarray(X, dtype=np.float64).reshape(-1, X.shape[-1])
            return np.matmul(X, W)

        self.network.forward(x, weights=self.quantized_weights(), matmul=rec, dtype=np.float64)
        self.periphery.calibrate(recorded)
        self._calibrated_on = x.shape

    def ensure_calibrated(self, x) -> None:
        """Calibrate the DAC/ADC ranges once: on the first 256 samples of ``x`` if this simulator
        has active periphery and has not been calibrated yet, else nothing.

        This sets the simulator's periphery ranges (it modifies the simulator, once); every later
        evaluation, whatever its inputs, uses the same ranges."""
        if self.periphery.active and self._calibrated_on is None:
            self.calibrate(x[: min(len(x), 256)])

    def _hook(self, draws: list[ChipDraw]):
        if not self.periphery.active:
            return None
        levels = [np.stack([d.levels[i] for d in draws]) for i in range(len(self.maps))] if self._keep_levels else None
        alpha = ([np.array([d.alpha[i] for d in draws], dtype=self.dtype) for i in range(len(self.maps))]
                 if draws[0].alpha is not None else None)
        return self._make_hook(len(draws), levels, alpha)

    def _make_backend(self, backend: str):
        if backend == "numpy":
            return None
        if backend != "torch" and not backend.startswith("torch:"):
            raise ReliabilityError(f"backend={backend!r}: use 'numpy', 'torch', 'torch:cpu' or 'torch:cuda[:N]'.")
        if self.periphery.active:
            raise ReliabilityError(f"backend={backend!r}: DAC/ADC (the chip's periphery) are simulated by the numpy "
                                   "backend only; use backend='numpy' for this chip, or drop the periphery.")
        from reliability.cim.graph.torch_exec import TorchForward, torch_device

        return TorchForward(self.network, torch_device(backend))

    def forward_weights(self, x, weights: list[np.ndarray], levels: list[np.ndarray] | None = None, keep=False):
        """Run the network for chips given directly by stacked effective weights (S, K, N) per layer
        (and, with an ADC, their slice levels (S, slices, K, N))."""
        if self._torch is not None and not keep:
            return self._torch.forward(x, weights, dtype=self.dtype)
        hook = self._make_hook(weights[0].shape[0], levels, None) if self.periphery.active else None
        return self.network.forward(x, weights=weights, matmul=hook, keep=keep, dtype=self.dtype)

    def _make_hook(self, S, levels, alpha):
        def hook(layer, X, W):
            i = layer.index
            return self.periphery.matmul(i, X, W, None if levels is None else levels[i],
                                         None if alpha is None else alpha[i]).reshape(S, X.shape[-2], -1)
        return hook

    def _stacked_weights(self, draws: list[ChipDraw]) -> list[np.ndarray]:
        stack = draws[0].stack
        if stack is not None and all(d.stack is stack and d.slot == k for k, d in enumerate(draws)) \
                and stack[0].shape[0] == len(draws):
            return stack
        return [np.stack([d.weights[i] for d in draws]) for i in range(len(self.maps))]

    def logits(self, x, draws: list[ChipDraw], keep: bool = False):
        weights = self._stacked_weights(draws)
        if self._torch is not None and not keep:
            return self._torch.forward(x, weights, dtype=self.dtype)
        return self.network.forward(x, weights=weights, matmul=self._hook(draws), keep=keep, dtype=self.dtype)

    def chips_per_chunk(self, x, n_chips: int) -> int:
        """Chips evaluated together on inputs ``x`` so that a chunk's weights and activations fit the
        memory budget (at most ``n_chips``; at least 1).  Measured once per input shape."""
        budget = self.spec.memory_budget_MB * 2 ** 20
        per_chip = sum(m.K * m.N * self.dtype.itemsize * (2 + (len(m.sig) if self._keep_levels else 0))
                       + m.n_devices * self.dtype.itemsize * 3 for m in self.maps)
        key = (tuple(x.shape[1:]), str(x.dtype))
        per_chip_sample = self._probe.get(key)
        if per_chip_sample is None:      # measured once per input shape (the trace costs a few chips)
            probe = x[: min(len(x), 32)]
            draws = self.draw_chips([0, 1], seed=0)
            # traced on the numpy path (tracemalloc sees no torch memory): the activations are alike
            peak = traced_peak(lambda: self.network.forward(probe, weights=self._stacked_weights(draws),
                                                            matmul=self._hook(draws), dtype=self.dtype))
            per_chip_sample = self._probe[key] = peak / (2 * len(probe))
        per = per_chip + per_chip_sample * len(x)
        s = int(max(1, min(n_chips, budget // max(per, 1))))
        if self._torch is None:
            # the numpy products run one chip's GEMM at a time: larger chunks only add cache misses and
            # fresh pages (2,048-chip chunks of the digits MLP ran 25 % slower than 256-chip ones)
            s = min(s, _CPU_CHUNK)
        return s

    def evaluate(self, x, y, n_chips: int | None = None, *, chips=None, rng=0, chunk_size: int | None = None,
                 progress=None) -> SimulationResult:
        """Accuracy (fraction of ``argmax == y``) and mean cross-entropy of each chip.

        ``chips``: explicit chip indices (default ``range(n_chips)``).  ``rng``: an int seed, or a
        ``numpy.random.Generator`` turned into one (:func:`reliability.streams.as_seed`); chip ``i``
        draws from ``chip_rng(seed, i)`` and the result records ``seed``.  Ctrl-C returns the chips
        finished so far, flagged ``complete=False``.
        """
        seed = as_seed(rng)
        x = np.asarray(x)
        y = np.asarray(y)
        if x.shape[0] != y.shape[0]:
            raise ReliabilityError(f"x has {x.shape[0]} samples but y has {y.shape[0]}; give one label per sample.")
        if chips is None:
            if n_chips is None or int(n_chips) < 1:
                raise ReliabilityError(f"n_chips must be a positive integer; got {n_chips!r}.")
            chips = np.arange(int(n_chips))
        chips = np.asarray(chips, dtype=np.int64)
        self.ensure_calibrated(x)
        t0 = time.perf_counter()
        S = int(chunk_size or self.chips_per_chunk(x, len(chips)))
        acc, loss, ncor, done = [], [], [], []
        complete = True
        # one stacked weight array per layer, reused chunk after chunk (no fresh pages per chunk)
        stack = [np.empty((min(S, len(chips)), m.K, m.N), dtype=self.dtype) for m in self.maps]
        try:
            for start in range(0, len(chips), S):
                idx = chips[start:start + S]
                if self._batch_counts is not None:       # no per-chip objects: a small chip costs microseconds
                    W, levels = self._draw_batch(idx, seed, [w[:len(idx)] for w in stack], objects=False)
                    logits = self.forward_weights(x, W, levels)
                else:
                    logits = self.logits(x, self.draw_chips(idx, seed, out=stack))
                correct, ce = correct_and_loss(logits, y)
                ncor.append(correct)
                acc.append(correct / len(y))
                loss.append(ce)
                done.append(idx)
                if progress is not None:
                    progress(sum(len(d) for d in done), len(chips))
        except KeyboardInterrupt:
            complete = False
        cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
        return SimulationResult(cat(done, np.int64), cat(acc, np.float64), cat(loss, np.float64), cat(ncor, np.int64),
                                int(len(y)), int(seed), time.perf_counter() - t0, S, complete,
                                self.saturation_diagnostics(), "" if complete else "interrupted: partial result")

    def saturation_diagnostics(self) -> dict:
        """The fractions of DAC inputs and ADC outputs that saturated, over every product this
        simulator has run (an entry only for a converter that is simulated)."""
        p = self.periphery.saturated
        diag = {}
        if p["dac_total"]:
            diag["dac_saturated_fraction"] = p["dac"] / p["dac_total"]
        if p["adc_total"]:
            diag["adc_saturated_fraction"] = p["adc"] / p["adc_total"]
        return diag

    # ------------------------------------------------------------------ gradients
    def gradients(self, x, y, chips, seed: int = 0, loss: str = "cross_entropy"):
        """Gradients of the summed loss over ``x`` for each chip in ``chips``.

        ``loss``: "cross_entropy" or "margin" (true-class logit minus the largest other logit).
        Returns ``(value (S,), dW: list of (S, K, N), dg: list of (S, *device shape), draws)``,
        where ``dg`` is the gradient with respect to each device's conductance (equivalently, its
        deviation from the target), through the linear decode.  ADC quantization is passed
        through unchanged (straight-through).
        """
        x = np.asarray(x)
        y = np.asarray(y).astype(np.int64)
        self.ensure_calibrated(x)
        draws = self.draw_chips(chips, seed, keep_conductances=True)
        logits, cache = self.logits(x, draws, keep=True)
        lg = logits.astype(np.float64)
        if loss == "cross_entropy":
            ce, grad = softmax_cross_entropy(lg, y)
            value = ce.sum(axis=1)
        elif loss == "margin":
            mg, grad = margin(lg, y, grad=True)
            value = mg.sum(axis=1)
        else:
            raise ReliabilityError(f"loss must be 'cross_entropy' or 'margin'; got {loss!r}.")
        g = self.network.backward(cache, grad.astype(self.dtype), input_grad=False)
        dW = list(g.weights)
        if draws[0].alpha is not None:
            dW = [dw * np.array([d.alpha[i] for d in draws], dtype=dw.dtype)[:, None, None] for i, dw in enumerate(dW)]
        dg = [m.grad_conductance(dw) for m, dw in zip(self.maps, dW)]
        return value, dW, dg, draws
