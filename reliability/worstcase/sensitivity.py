"""How large a worst-case deviation is and which devices carry it.

:func:`deviation_stats` sizes one chip's deviation (sigma units, weight units per layer, against
the physical conductance range); :func:`rank_devices` attributes the margin loss change to layers
and devices by integrated gradients along the path from the nominal chip (the criterion is
described in :mod:`reliability.worstcase`).
"""

from __future__ import annotations

import numpy as np

from reliability.worstcase.results import Sensitivity

__all__ = ["deviation_stats", "rank_devices"]


def deviation_stats(obj, zs, k, norm, g0) -> dict:
    """Size of one chip's deviation: in sigma units, in weight units per layer, and against the
    physical conductance range.

    Parameters
    ----------
    obj : MarginObjective
    zs : list of arrays
        The chip's searched latent blocks (chip axis of length 1).
    k : float
        The bound it was searched at; ``norm`` its norm.
    g0 : list of arrays
        The nominal chip's conductances (``obj.conductances`` at ``z = 0``).

    Returns
    -------
    dict
        The keys documented in :class:`~reliability.worstcase.BoundResult` (``deviation``).
    """
    flat = np.concatenate([np.abs(np.asarray(b, dtype=np.float64)).ravel() for b in zs]) if zs else np.zeros(0)
    if flat.size == 0:
        return {}
    d = {"max_abs_z": float(flat.max()), "mean_abs_z": float(flat.mean()),
         "rms_z": float(np.sqrt(np.mean(flat ** 2))), "l2_norm": float(np.sqrt(np.sum(flat ** 2)))}
    if norm == "linf":
        d["at_bound_fraction"] = float(np.mean(flat >= k * (1 - 1e-9))) if k > 0 else 0.0
    else:
        d["at_bound_fraction"] = float(d["l2_norm"] / k) if k > 0 else 0.0
    by_kind = {}
    for (kind, _, _), b in zip([obj.latent.blocks[i] for i in obj.block_index], zs):
        by_kind.setdefault(kind, []).append(np.abs(np.asarray(b)).ravel())
    d["mean_abs_z_by_kind"] = {kk: float(np.concatenate(v).mean()) for kk, v in by_kind.items()}
    g = obj.conductances(obj.full(zs))
    W, _ = obj.weights(g)
    W0, _ = obj.weights(g0)
    dev = obj.device
    layers = []
    n_dev = n_floor = n_out = 0
    for li, (layer, w, w0, a, (lo, hi)) in enumerate(zip(obj.sim.network.analog_layers, W, W0, g, obj.limits)):
        m = float(layer.layer_max_abs) or 1.0
        dw = np.abs(w[0].astype(np.float64) - w0[0].astype(np.float64)) / m
        layers.append({"layer": li, "name": layer.name, "max_rel_weight_deviation": float(dw.max()),
                       "mean_rel_weight_deviation": float(dw.mean())})
        n_dev += a.size
        if dev.floor is not None:
            n_floor += int(np.count_nonzero(a <= dev.floor))
        n_out += int(np.count_nonzero((a < lo - 1e-12) | (a > hi + 1e-12)))
    d["weights"] = layers
    d["floor_fraction"] = n_floor / n_dev if dev.floor is not None else None
    d["outside_range_fraction"] = n_out / n_dev
    return d


def rank_devices(obj, zs, k, chip, path_points, top) -> Sensitivity:
    """Integrated-gradient attribution of the clipped margin loss change from the nominal chip to
    the chip ``zs`` (searched blocks, chip axis of length 1), ranked per layer and device.

    One batched gradient of ``path_points + 2`` chips: the ``path_points`` midpoints of the
    straight path, then its two ends (for the completeness check).  ``k`` and ``chip`` (a label,
    e.g. "largest bound") describe where ``zs`` came from; ``top`` devices are listed.
    """
    P = int(path_points)
    ts = np.concatenate([(np.arange(P) + 0.5) / P, [0.0, 1.0]])
    path = [np.concatenate([t * b for t in ts], axis=0) for b in zs]
    loss, _, grads, _ = obj.value_and_grad(path)
    gbar = [g[:P].mean(axis=0) for g in grads]
    zstar = [b[0] for b in zs]
    attr = [z * g for z, g in zip(zstar, gbar)]
    scores = [np.abs(a) for a in attr]
    blocks = tuple(obj.latent.blocks[i] for i in obj.block_index)
    names = tuple(layer.name for layer in obj.sim.network.analog_layers)
    total = float(sum(float(np.sum(s)) for s in scores))
    layers = []
    for li, name in enumerate(names):
        idx = [j for j, (kind, l2, _) in enumerate(blocks) if l2 == li and kind != "gain"]
        if not idx:
            continue
        s = sum(float(np.sum(scores[j])) for j in idx)
        by_kind = {blocks[j][0]: (float(np.sum(scores[j])) / total if total > 0 else 0.0) for j in idx}
        layers.append({"layer": li, "name": name, "devices": int(sum(scores[j].size for j in idx)),
                       "share": s / total if total > 0 else 0.0,
                       "attribution": float(sum(float(np.sum(attr[j])) for j in idx)),
                       "mean_abs_z": float(np.mean(np.concatenate([np.abs(zstar[j]).ravel() for j in idx]))),
                       "share_by_kind": by_kind})
    gain = None
    gi = [j for j, (kind, _, _) in enumerate(blocks) if kind == "gain"]
    if gi:
        j = gi[0]
        gain = {"z": float(zstar[j]), "gradient": float(gbar[j]), "attribution": float(attr[j]),
                "share": float(scores[j]) / total if total > 0 else 0.0}
    # top devices over every searched per-device coordinate
    cand = []
    for j, (kind, li, shape) in enumerate(blocks):
        if kind == "gain":
            continue
        s = scores[j].ravel()
        n = min(top, s.size)
        if n == 0:
            continue
        part = np.argpartition(-s, n - 1)[:n]
        for f in part:
            cand.append((float(s[f]), j, int(f)))
    cand.sort(key=lambda c: -c[0])
    tops = []
    for s, j, f in cand[:top]:
        kind, li, shape = blocks[j]
        idx = [int(v) for v in np.unravel_index(f, shape)]
        tops.append({"layer": li, "name": names[li], "kind": kind, "device": idx, "weight": idx[-2:],
                     "z": float(zstar[j].ravel()[f]), "gradient": float(gbar[j].ravel()[f]), "score": s})
    completeness = {"sum_attribution": float(sum(float(np.sum(a)) for a in attr)),
                    "loss_change": float(loss[P + 1] - loss[P]), "path_points": P}
    crit = ("|z_i| * |mean over t of dL/dz_i(t z*)| (integrated-gradients magnitude, L = clipped margin loss; "
            f"{P} path points)")
    return Sensitivity(float(k), chip, crit, tuple(layers), tuple(tops), completeness, gain, blocks, names,
                       tuple(scores), tuple(zstar), tuple(gbar))
