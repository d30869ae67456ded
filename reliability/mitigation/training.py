"""Hardware-aware (noise-injection) fine-tuning through the core's weight gradients.

Each step draws ``chips`` noisy copies of every analog weight matrix, ``W + sigma max|W| eps``
(``max|W|`` the layer's current largest weight, as aihwkit's weight noise is relative to w_max;
Joshi et al. 2020), runs the mini-batch through all copies at once (the chip axis of the batched
executor), and steps the clean weights along the mean gradient of the cross-entropy (the noise is
additive, so ``dL/dW = dL/dW_noisy``) with Adam.  Biases are digital and stay as trained.

``noise="gaussian"``: ``eps ~ N(0, 1)``.  ``noise="censored"``: the right-censored Gaussian of
Yan et al. (ICCAD 2023), ``eps = min(z, c)``: draws above ``c`` standard deviations are recorded as
``c`` (``censor = c``; the paper tunes ``c`` automatically, here it is a parameter).

The result is a new :class:`~reliability.cim.graph.Network` (``Network.with_weights``), which
:func:`reliability.cim.save_onnx` writes as ONNX.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reliability.cim.graph import softmax_cross_entropy
from reliability.errors import ModelSpecError, ReliabilityError
from reliability.streams import as_generator

__all__ = ["finetune", "TrainingHistory", "NOISES"]

NOISES = ("gaussian", "censored")


@dataclass(frozen=True)
class TrainingHistory:
    """Mean noisy training loss per epoch, and the settings used."""

    loss: tuple[float, ...]
    epochs: int
    settings: dict = field(default_factory=dict)


def finetune(network, x, y, *, sigma: float = 0.1, noise: str = "gaussian", censor: float = 1.0, epochs: int = 5,
             lr: float = 1e-3, batch: int = 32, chips: int = 4, rng=0, progress=None):
    """Fine-tune ``network``'s analog weights on ``(x, y)`` with injected weight noise.

    Parameters
    ----------
    sigma : float
        Noise standard deviation relative to each layer's ``max|W|``.
    noise : "gaussian" or "censored"
    censor : float
        For ``censored``: draws above ``censor`` standard deviations are set to it.
    epochs, lr, batch : training schedule (Adam, betas 0.9 / 0.999).
    chips : int
        Noisy copies per mini-batch (evaluated together).
    rng : int or Generator
        Seeds the shuffling and the noise.
    progress : callable, optional
        ``progress(epoch, epochs)`` after each epoch.

    Returns
    -------
    (Network, TrainingHistory)
    """
    if noise not in NOISES:
        raise ModelSpecError(f"noise must be one of {NOISES}; got {noise!r}.")
    if not (sigma > 0 and np.isfinite(sigma)):
        raise ModelSpecError(f"sigma must be positive; got {sigma!r}.")
    for name, v in (("epochs", epochs), ("batch", batch), ("chips", chips)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ModelSpecError(f"{name} must be a positive integer; got {v!r}.")
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y).astype(np.int64)
    if x.shape[0] != y.shape[0] or y.size == 0:
        raise ReliabilityError(f"training data: {x.shape[0]} inputs and {y.size} labels; give one label per input.")
    gen = as_generator(rng)
    W = [np.array(layer.weight, dtype=np.float64) for layer in network.analog_layers]
    m1 = [np.zeros_like(w) for w in W]
    m2 = [np.zeros_like(w) for w in W]
    b1, b2, eps_adam = 0.9, 0.999, 1e-8
    step = 0
    history = []
    n = y.size
    for ep in range(int(epochs)):
        order = gen.permutation(n)
        total = 0.0
        for s0 in range(0, n, int(batch)):
            idx = order[s0:s0 + int(batch)]
            noisy = []
            for w in W:
                e = gen.standard_normal((int(chips),) + w.shape)
                if noise == "censored":
                    np.minimum(e, censor, out=e)
                noisy.append((w[None] + sigma * np.max(np.abs(w)) * e).astype(np.float32))
            logits, cache = network.forward(x[idx], weights=noisy, keep=True, dtype=np.float32)
            loss, g = softmax_cross_entropy(logits, y[idx])
            total += float(loss.sum()) / int(chips)
            grads = network.backward(cache, (g / (int(chips) * idx.size)).astype(np.float32), input_grad=False)
            step += 1
            for k, dw in enumerate(grads.weights):
                gk = dw.sum(axis=0).astype(np.float64)
                m1[k] = b1 * m1[k] + (1 - b1) * gk
                m2[k] = b2 * m2[k] + (1 - b2) * gk * gk
                W[k] -= lr * (m1[k] / (1 - b1 ** step)) / (np.sqrt(m2[k] / (1 - b2 ** step)) + eps_adam)
        history.append(total / n)
        if progress is not None:
            progress(ep + 1, int(epochs))
    settings = {"sigma": sigma, "noise": noise, "censor": censor, "epochs": int(epochs), "lr": lr, "batch": int(batch),
                "chips": int(chips)}
    tuned = network.with_weights(W, source=f"{network.source} (noise-aware fine-tuning, {noise}, sigma {sigma:g}, "
                                           f"{int(epochs)} epochs)")
    return tuned, TrainingHistory(tuple(history), int(epochs), settings)
