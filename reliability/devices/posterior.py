"""A device model whose parameters are uncertain: a point model plus a table of posterior draws.

:class:`PosteriorDeviceModel` is what a Bayesian fit (:func:`reliability.fit.bayes.fit_device_bayes`)
returns.  It *is* a :class:`~reliability.devices.model.DeviceModel` -- its own fields hold the
posterior-median model, so everything that reads a device model's parts (``describe``, mappings,
``PreparedArray``, ``program``/``read``) sees that point model -- and it carries ``draws``, an
``(n_draws, n_params)`` table of joint posterior draws of the parameters named in ``param_names``,
each stored at a place ``param_paths`` of the model's JSON document (``"chip_gain/sigma"``,
``"programming/scale/values/3"``).  :meth:`model_at` builds the plain ``DeviceModel`` of draw ``j``.

Sampling carries the parameter uncertainty into the devices:

* :meth:`sample_chips` -- chip ``i`` gets the ``i``-th child of ``rng`` (``Generator.spawn``); from
  that child it first draws its posterior draw index ``j`` (uniform over the draws), then the
  devices of that chip are sampled by ``model_at(j).sample_chips(target, 1, time_s, child)``.  Chip
  ``i``'s values depend only on the seed and ``i``, not on ``n_chips``.
* :meth:`sample` -- every device is on its own new chip, so every device draws its own draw index
  (``rng.integers`` for all devices first, then the devices of each draw, draws in increasing
  order, from the same ``rng``).
* :meth:`draw_model` -- one chip's model (draw index from the given generator) for simulators that
  program a chip's arrays themselves.

JSON: :meth:`save` writes the schema-v1 document of the point model plus a ``"posterior"`` entry
naming the ``.npz`` file stored beside it (relative path) that holds the draws, their names and
paths; optionally the sampler's trace (ArviZ InferenceData, NetCDF) is written beside it too.
:meth:`load` restores both.  Nothing is pickled.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import polars as pl

from reliability._json import atomic_output
from reliability.devices.model import DeviceModel
from reliability.errors import ModelSpecError, option
from reliability.streams import as_generator

__all__ = ["PosteriorDeviceModel", "POSTERIOR_FORMAT"]

#: Identifies the draws file's layout (stored in the JSON ``posterior`` entry and in the npz).
POSTERIOR_FORMAT = "nvcim-reliability/posterior-draws-v1"
_CACHE_MAX = 4096


def _set_path(doc: dict, path: str, value: float) -> None:
    keys = path.split("/")
    node: Any = doc
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = float(value)
    else:
        node[last] = float(value)


def _get_path(doc: dict, path: str) -> float:
    node: Any = doc
    for k in path.split("/"):
        node = node[int(k)] if isinstance(node, list) else node[k]
    return float(node)


def _read_draws(npz: Path) -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray]:
    """``(names, paths, draws)`` of a posterior draws file; :class:`ModelSpecError` for anything else."""
    import zipfile

    fix = "re-save the model (PosteriorDeviceModel.save) or restore the file written beside the JSON file"
    try:
        with np.load(npz, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ModelSpecError(f"{npz} is a single array, not a posterior draws file; {fix}.")
            missing = [k for k in ("format", "draws", "names", "paths") if k not in z.files]
            if missing:
                raise ModelSpecError(f"{npz} is not a posterior draws file of format {POSTERIOR_FORMAT!r} (no "
                                     f"{missing[0]!r} entry); {fix}.")
            fmt, names, paths, draws = z["format"], z["names"], z["paths"], z["draws"]
    except ModelSpecError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelSpecError(f"{npz} cannot be read as a posterior draws file ({exc}); {fix}.") from None
    if str(fmt) != POSTERIOR_FORMAT:
        raise ModelSpecError(f"{npz} is not a posterior draws file of format {POSTERIOR_FORMAT!r}; {fix}.")
    if names.ndim != 1 or paths.ndim != 1 or not np.issubdtype(draws.dtype, np.number):
        raise ModelSpecError(f"{npz} is damaged: 'names' and 'paths' must be lists and 'draws' numbers; {fix}.")
    return tuple(str(s) for s in names), tuple(str(s) for s in paths), np.asarray(draws, dtype=float)


@dataclass(frozen=True)
class PosteriorDeviceModel(DeviceModel):
    """A device model with a table of posterior draws of its parameters (see the module docstring).

    Parameters
    ----------
    name, unit, programming, drift, read_noise, stuck, chip_gain, g_range, floor, description, source, metadata
        The point model, as in :class:`DeviceModel` (the fitter stores the posterior median of every
        parameter).
    param_names : tuple of str
        Human-readable parameter names, e.g. ``"chip_gain.sigma"``, ``"programming.scale[3]"``.
    param_paths : tuple of str
        Where each parameter sits in the model's JSON document, ``/``-separated
        (``"programming/scale/values/3"``).
    draws : numpy.ndarray, shape (n_draws, n_params)
        Joint posterior draws (each row one draw of all parameters).
    posterior_file, trace_file : str or None
        File names (relative to the JSON file) of the draws and of the sampler's trace; set by
        :meth:`save` and :meth:`load`.
    """

    document_key: ClassVar[str | None] = "posterior"

    param_names: tuple[str, ...] = ()
    param_paths: tuple[str, ...] = ()
    draws: np.ndarray | None = field(default=None, compare=False, repr=False)
    posterior_file: str | None = None
    trace_file: str | None = None
    base_dir: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        names = tuple(str(n) for n in self.param_names)
        paths = tuple(str(p) for p in self.param_paths)
        if len(names) != len(paths) or not names:
            raise ModelSpecError(f"PosteriorDeviceModel needs as many param_paths as param_names (at least one); got "
                                 f"{len(names)} names and {len(paths)} paths.")
        if self.draws is None:
            raise ModelSpecError("PosteriorDeviceModel.draws is missing: give an (n_draws, n_params) array.")
        d = np.array(self.draws, dtype=float)
        if d.ndim != 2 or d.shape[1] != len(names) or d.shape[0] < 1:
            raise ModelSpecError(f"PosteriorDeviceModel.draws must have shape (n_draws, {len(names)}); got {d.shape}.")
        if not np.all(np.isfinite(d)):
            raise ModelSpecError(f"PosteriorDeviceModel.draws has {int(np.sum(~np.isfinite(d)))} non-finite entries.")
        d.setflags(write=False)
        object.__setattr__(self, "param_names", names)
        object.__setattr__(self, "param_paths", paths)
        object.__setattr__(self, "draws", d)
        template = DeviceModel.to_dict(self)
        template.pop("metadata", None)
        for p in paths:
            try:
                _get_path(template, p)
            except (KeyError, IndexError, TypeError, ValueError):
                raise ModelSpecError(f"PosteriorDeviceModel: parameter path {p!r} does not exist in the point model's "
                                     "JSON document; paths look like 'chip_gain/sigma' or 'programming/scale/values/0'.") from None
        object.__setattr__(self, "_template", template)
        object.__setattr__(self, "_cache", {})

    # ------------------------------------------------------------------ draws
    @property
    def n_draws(self) -> int:
        return int(self.draws.shape[0])

    def point_model(self) -> DeviceModel:
        """The point (posterior-median) model as a plain :class:`DeviceModel`."""
        return DeviceModel(**{f.name: getattr(self, f.name) for f in fields(DeviceModel)})

    def model_at(self, j: int) -> DeviceModel:
        """The plain :class:`DeviceModel` of posterior draw ``j`` (0 <= j < n_draws); cached."""
        j = int(j)
        if not 0 <= j < self.n_draws:
            raise ModelSpecError(f"draw index must be in 0..{self.n_draws - 1}; got {j}.")
        cache = self._cache
        m = cache.get(j)
        if m is None:
            doc = copy.deepcopy(self._template)
            for p, v in zip(self.param_paths, self.draws[j]):
                _set_path(doc, p, v)
            m = DeviceModel.from_dict(doc)
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[j] = m
        return m

    def draw_index(self, rng=None, size=None) -> np.ndarray | int:
        """Uniform posterior draw indices from ``rng``."""
        rng = as_generator(rng)
        return rng.integers(self.n_draws, size=size) if size is not None else int(rng.integers(self.n_draws))

    def draw_model(self, rng=None) -> DeviceModel:
        """One chip's device model: a draw index from ``rng``, then :meth:`model_at`."""
        return self.model_at(self.draw_index(rng))

    def parameter_table(self, probs: Sequence[float] = (0.05, 0.5, 0.95)) -> pl.DataFrame:
        """One row per parameter: name, JSON path, point value and posterior quantiles."""
        q = np.quantile(self.draws, probs, axis=0)
        data: dict[str, Any] = {"parameter": list(self.param_names), "path": list(self.param_paths),
                                "point": [_get_path(self._template, p) for p in self.param_paths],
                                "mean": self.draws.mean(axis=0), "sd": self.draws.std(axis=0, ddof=1) if self.n_draws > 1
                                else np.zeros(len(self.param_names))}
        for p, row in zip(probs, q):
            data[f"q{100 * p:g}"] = row
        return pl.DataFrame(data)

    # ------------------------------------------------------------------ sampling
    def sample(self, target, time_s: float = 0.0, size=None, rng=None) -> np.ndarray:
        """Conductances of random devices, each on its own new chip with its own posterior draw.

        The draw index of every device comes first (``rng.integers``), then each draw's devices
        are sampled by that draw's model, draws in increasing order, from the same ``rng``.
        """
        rng = as_generator(rng)
        target = np.asarray(target, dtype=float)
        if size is not None:
            target = np.broadcast_to(target, size)
        idx = np.asarray(self.draw_index(rng, target.shape))
        out = np.empty(target.shape)
        flat_t = target.reshape(-1)
        flat_i = idx.reshape(-1)
        flat_o = out.reshape(-1)
        order = np.argsort(flat_i, kind="stable")
        uniq, starts = np.unique(flat_i[order], return_index=True)
        ends = np.append(starts[1:], order.size)
        for j, a, b in zip(uniq, starts, ends):
            sel = order[a:b]
            flat_o[sel] = self.model_at(int(j)).sample(flat_t[sel], time_s, rng=rng)
        return out

    def sample_chips(self, target, n_chips: int, time_s: float = 0.0, rng=None) -> np.ndarray:
        """``n_chips`` chips of devices programmed to ``target``: shape ``(n_chips, *target.shape)``.

        Chip ``i`` uses the ``i``-th child of ``rng``: first its posterior draw index, then its
        devices from that draw's model (so chip ``i`` does not depend on ``n_chips``).
        """
        rng = as_generator(rng)
        if int(n_chips) != n_chips or n_chips < 1:
            raise ModelSpecError(f"n_chips must be a positive integer; got {n_chips!r}.")
        target = np.asarray(target, dtype=float)
        out = np.empty((int(n_chips),) + target.shape)
        for i, crng in enumerate(rng.spawn(int(n_chips))):
            out[i] = self.model_at(self.draw_index(crng)).sample_chips(target, 1, time_s, crng)[0]
        return out

    # ------------------------------------------------------------------ text
    def describe(self) -> str:
        from reliability.devices.describe import describe

        lines = [describe(self.point_model()).replace("device model '", "device model (posterior median) '", 1)]
        lines.append(f"  posterior: {self.n_draws} joint draws of {len(self.param_names)} parameters"
                     + (f" ({self.posterior_file})" if self.posterior_file else "")
                     + "; every simulated chip draws one (parameter uncertainty widens chip-to-chip spread)")
        tab = self.parameter_table()
        show = [r for r in tab.iter_rows(named=True)
                if not r["parameter"].startswith(("programming.loc", "drift.", "read_noise."))]
        for r in show[:14]:
            lines.append(f"    {r['parameter']:24s} median {r['q50']:.4g}, 90 % interval [{r['q5']:.4g}, {r['q95']:.4g}]")
        if len(show) > 14:
            lines.append(f"    ... and {len(show) - 14} more (parameter_table())")
        return "\n".join(lines)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        d = DeviceModel.to_dict(self)
        d["posterior"] = {"format": POSTERIOR_FORMAT, "file": self.posterior_file, "trace": self.trace_file,
                          "n_draws": self.n_draws, "n_params": len(self.param_names),
                          "chip_rule": "each chip draws one posterior row (uniform index from the chip's own "
                                       "generator), then its devices from that row's model"}
        return d

    def save(self, path, overwrite: bool = False, trace=None) -> Path:
        """Write the JSON document, the draws (``<stem>.posterior.npz``) and, when ``trace`` (an
        ArviZ InferenceData) is given, the trace (``<stem>.trace.nc``), all in one folder.

        Refuses to overwrite any of them unless ``overwrite``.
        """
        path = Path(path)
        npz = path.with_name(path.stem + ".posterior.npz")
        nc = path.with_name(path.stem + ".trace.nc") if trace is not None else None
        for p in (path, npz, nc):
            if p is not None and p.exists() and not overwrite:
                raise FileExistsError(f"{p} exists; pass {option('overwrite')} or choose another path.")
        # each file atomically, the JSON that names the others last
        with atomic_output(npz) as tmp:
            np.savez_compressed(tmp, format=np.array(POSTERIOR_FORMAT), draws=self.draws,
                                names=np.array(self.param_names), paths=np.array(self.param_paths))
        if nc is not None:
            with atomic_output(nc) as tmp:
                trace.to_netcdf(str(tmp))
        saved = PosteriorDeviceModel(**{**{f.name: getattr(self, f.name) for f in fields(self)},
                                        "posterior_file": npz.name, "trace_file": nc.name if nc else self.trace_file,
                                        "base_dir": str(path.parent)})
        with atomic_output(path) as tmp:
            tmp.write_text(saved.to_json() + "\n")
        return path

    @classmethod
    def from_dict(cls, d: dict[str, Any], base_dir=None) -> "PosteriorDeviceModel":
        """Build from a JSON document with a ``posterior`` entry; the draws file is read from
        ``base_dir`` (the JSON file's folder)."""
        if not isinstance(d, dict) or "posterior" not in d:
            raise ModelSpecError("not a posterior device model: the JSON document has no 'posterior' entry.")
        d = dict(d)
        post = d.pop("posterior")
        if not isinstance(post, dict) or post.get("format") != POSTERIOR_FORMAT:
            raise ModelSpecError(f"'posterior' entry must be an object with format {POSTERIOR_FORMAT!r}; got {post!r}.")
        fname = post.get("file")
        if fname is not None and not isinstance(fname, str):
            raise ModelSpecError(f"'posterior.file' must be the name of the draws file beside the JSON file (a "
                                 f"string such as 'model.posterior.npz'); got {fname!r}.")
        trace = post.get("trace")
        if trace is not None and not isinstance(trace, str):
            raise ModelSpecError(f"'posterior.trace' must be the name of the trace file (a string) or null; got "
                                 f"{trace!r}.")
        n_draws = post.get("n_draws")
        if n_draws is not None and (isinstance(n_draws, bool) or not isinstance(n_draws, int)):
            raise ModelSpecError(f"'posterior.n_draws' must be a whole number (the number of draws); got {n_draws!r}.")
        if not fname:
            raise ModelSpecError("'posterior.file' is empty: the draws were never saved; save the model with "
                                 "PosteriorDeviceModel.save(path).")
        if base_dir is None:
            raise ModelSpecError(f"the posterior draws file {fname!r} is relative to the JSON file; load the model from "
                                 "its file (DeviceModel.load / load_device / PosteriorDeviceModel.load).")
        npz = Path(base_dir) / fname
        if not npz.exists():
            raise ModelSpecError(f"posterior draws file {npz} (named in the JSON 'posterior' entry) does not exist; "
                                 "keep it beside the JSON file.")
        names, paths, draws = _read_draws(npz)
        point = DeviceModel.from_dict(d)
        if n_draws is not None and n_draws != draws.shape[0]:
            raise ModelSpecError(f"{npz} holds {draws.shape[0]} draws but the JSON says {n_draws}.")
        return cls(**{f.name: getattr(point, f.name) for f in fields(DeviceModel)},
                   param_names=names, param_paths=paths, draws=draws, posterior_file=fname, trace_file=trace,
                   base_dir=str(base_dir))

    @classmethod
    def load(cls, path) -> "PosteriorDeviceModel":
        m = DeviceModel.load(path)          # dispatches here when the document has a "posterior" entry
        if not isinstance(m, PosteriorDeviceModel):
            raise ModelSpecError(f"{path} is a point device model (no 'posterior' entry); load it with "
                                 "DeviceModel.load or load_device.")
        return m

    def load_trace(self):
        """The sampler's trace (ArviZ InferenceData) stored beside the JSON file, if any."""
        if not self.trace_file or not self.base_dir:
            raise ModelSpecError("this posterior model has no trace file stored beside it.")
        import arviz as az

        return az.from_netcdf(str(Path(self.base_dir) / self.trace_file))

    @classmethod
    def from_point(cls, point: DeviceModel, names: Sequence[str], paths: Sequence[str], draws: np.ndarray,
                   **extra) -> "PosteriorDeviceModel":
        """Wrap a point model and a draws table."""
        return cls(**{f.name: getattr(point, f.name) for f in fields(DeviceModel)}, param_names=tuple(names),
                   param_paths=tuple(paths), draws=np.asarray(draws, dtype=float), **extra)
