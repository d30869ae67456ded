"""Checkpoint files of the tail estimators: atomic ``.npz`` writing, the run fingerprint that ties a
checkpoint to the run that wrote it, and refusing a checkpoint of another run."""

from __future__ import annotations

import contextlib
import hashlib
import json
import zipfile

import numpy as np

from reliability._json import atomic_output
from reliability.errors import ReliabilityError

__all__ = ["fingerprint", "open_checkpoint", "read_checkpoint_meta", "write_checkpoint"]


def fingerprint(sim, x, y, below, quantiles, budget, seed, method, estimator) -> str:
    """SHA-256 of everything a run's result depends on: the analog layers' weights, the evaluation
    data, the chip specification, the events, the budget, the seed, the method name and the
    estimator's class, version and scalar settings (:func:`settings`)."""
    h = hashlib.sha256()
    for layer in sim.network.analog_layers:
        h.update(np.ascontiguousarray(layer.weight).tobytes())
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    spec = sim.spec.to_dict()
    h.update(json.dumps({"spec": spec, "below": below, "quantiles": quantiles, "budget": int(budget), "seed": int(seed),
                         "method": method, "estimator": type(estimator).__name__,
                         "version": getattr(estimator, "version", None),
                         # the estimator's scalar settings (p0 among them): a run resumed with other settings
                         # would weight the saved chips against a proposal they were not drawn from
                         "settings": settings(estimator)}, sort_keys=True, default=str).encode())
    return h.hexdigest()


def settings(obj, depth: int = 2):
    """An estimator's scalar settings, with those of the estimators it holds (a hybrid's subset
    simulation), for the checkpoint fingerprint."""
    if obj is None or not hasattr(obj, "__dict__"):
        return None
    out = {}
    for k, v in sorted(vars(obj).items()):
        if isinstance(v, (bool, int, float, str, type(None))):
            out[k] = v
        elif depth > 1 and hasattr(v, "__dict__"):
            out[k] = settings(v, depth - 1)
    return out


def write_checkpoint(path, meta: dict, arrays: dict) -> None:
    """Write ``meta`` (JSON) and ``arrays`` to the ``.npz`` file ``path`` atomically: an interrupted
    write never leaves a broken checkpoint."""
    with atomic_output(path) as tmp, open(tmp, "wb") as f:      # a file object: numpy adds no suffix
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


@contextlib.contextmanager
def open_checkpoint(path):
    """``np.load`` of a checkpoint, with a damaged, truncated or foreign file (found while opening
    or while reading its arrays) reported as a :class:`ReliabilityError` naming the file and the fix."""
    fix = "delete it to start the run afresh, or give another checkpoint file"
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ReliabilityError(f"checkpoint {path} is a single array, not a checkpoint; {fix}.")
        with z:
            yield z
    except ReliabilityError:
        raise
    except (ValueError, OSError, EOFError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ReliabilityError(f"checkpoint {path} is damaged or not a checkpoint ({type(exc).__name__}); {fix}.") from None


def read_checkpoint_meta(path, z, fingerprint: str) -> dict:
    """The metadata of the opened checkpoint ``z``, refused when it belongs to another run."""
    meta = json.loads(str(z["meta"]))
    if meta["fingerprint"] != fingerprint:
        raise ReliabilityError(f"checkpoint {path} belongs to another run (different model, data, variation, "
                               "thresholds, budget, seed, estimator settings or estimator version); delete it or "
                               "choose another checkpoint file.")
    return meta
