"""Evaluation sets for simulated chips: ``.npz`` files with ``X`` (samples on axis 0) and integer
labels ``y``, as in the tail-accuracy benchmark cases, and the built-in scikit-learn digits set."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from reliability.errors import DataValidationError

__all__ = ["load_evalset", "digits_evalset"]


def load_evalset(path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``X`` (float32) and ``y`` (int64) from an ``.npz`` file, checked."""
    path = Path(path)
    if not path.exists():
        raise DataValidationError(f"evaluation data {path} does not exist; give an .npz file with arrays X and y.")
    fix = "save inputs and labels together with np.savez(path, X=inputs, y=labels)"
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        raise DataValidationError(f"{path} is not an .npz file numpy can read (a pickle, text or a damaged file?); "
                                  f"{fix}.") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataValidationError(f"{path} holds a single array (an .npy file), not X and y; {fix}.")
    try:
        with z:
            keys = set(z.files)
            missing = {"X", "y"} - keys
            if missing:
                raise DataValidationError(f"{path}: missing array(s) {sorted(missing)}; found {sorted(keys)}; {fix}.")
            X, y = z["X"], z["y"]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DataValidationError):
            raise
        raise DataValidationError(f"{path}: its arrays cannot be read ({type(exc).__name__}: a damaged file or "
                                  f"pickled objects); {fix}.") from None
    if not np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_:
        raise DataValidationError(f"{path}: X must hold numbers; got dtype {X.dtype}. Convert it, e.g. X.astype(np.float32).")
    if X.ndim < 1 or y.ndim < 1:
        raise DataValidationError(f"{path}: X and y need a first axis of samples; got shapes {X.shape} and {y.shape}.")
    if X.shape[0] != y.shape[0] or y.ndim != 1:
        raise DataValidationError(f"{path}: X has {X.shape[0]} samples, y has shape {y.shape}; y must be 1-D with one "
                                  "label per sample.")
    if X.shape[0] == 0:
        raise DataValidationError(f"{path}: no samples.")
    if not np.all(np.isfinite(X)):
        bad = np.argwhere(~np.isfinite(X.astype(float)))[:5].tolist()
        raise DataValidationError(f"{path}: X must be finite numbers; NaN/inf at {bad}. Remove or fix those samples.")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(y == np.rint(y)):
            y = y.astype(np.int64)
        else:
            raise DataValidationError(f"{path}: y must hold integer class labels; got dtype {y.dtype}.")
    if np.any(y < 0):
        raise DataValidationError(f"{path}: y has negative labels (first at sample {int(np.argmax(y < 0))}).")
    return X.astype(np.float32), y.astype(np.int64)


def digits_evalset(n_train: int = 1200) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits, pixels / 16: ``(X_train, y_train, X_eval, y_eval)`` split at
    ``n_train`` (the benchmark case digits_mlp_s05 evaluates on samples 1200..1796)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def fashion_mnist(split: str = "test", directory: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST (MIT) from Debian's ``dataset-fashion-mnist`` package: ``X`` (n, 1, 28, 28)
    float32 scaled to [0, 1], ``y`` int64.  ``split``: "train" (60,000) or "test" (10,000)."""
    import gzip

    d = Path(directory or FASHION_MNIST_DIR)
    if split not in ("train", "test"):
        raise DataValidationError(f"split must be 'train' or 'test'; got {split!r}.")
    prefix = "train" if split == "train" else "t10k"
    img, lab = d / f"{prefix}-images-idx3-ubyte.gz", d / f"{prefix}-labels-idx1-ubyte.gz"
    if not img.exists() or not lab.exists():
        raise DataValidationError(f"Fashion-MNIST not found in {d}; install it with "
                                  "`apt-get install dataset-fashion-mnist` or pass directory=.")
    with gzip.open(img, "rb") as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
    with gzip.open(lab, "rb") as f:
        y = np.frombuffer(f.read(), dtype=np.uint8, offset=8).astype(np.int64)
    X = (raw.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)
    if X.shape[0] != y.shape[0]:
        raise DataValidationError(f"{img} and {lab} disagree on the number of samples.")
    return X, y
