"""Human-readable description of a device model, every parameter with its unit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reliability.devices.components import EmpiricalVariation

if TYPE_CHECKING:  # only for the annotation: the model module calls this one
    from reliability.devices.model import DeviceModel

__all__ = ["describe"]


def describe(model: DeviceModel) -> str:
    u = model.unit
    lines = [f"device model '{model.name}' (unit: {u})"]
    if model.description:
        lines.append(f"  {model.description}")
    if model.source:
        lines.append(f"  source: {model.source}")
    fit = model.metadata.get("fit") if isinstance(model.metadata, dict) else None
    if isinstance(fit, dict) and fit.get("success") is False:
        warns = fit.get("warnings")
        warns = [str(w) for w in warns] if isinstance(warns, list) and warns else ["see the fit report"]
        lines.append("  FIT DIAGNOSTICS FAILED: " + "; ".join(warns))
    if model.g_range is not None:
        lines.append(f"  programmable range: {model.g_range[0]:g} .. {model.g_range[1]:g} {u}")
    lines.append(f"  floor: {model.floor if model.floor is not None else 'none'}{' ' + u if model.floor is not None else ''}")
    p = model.programming
    if p is None:
        lines.append("  programming: exact (no variation)")
    elif isinstance(p, EmpiricalVariation):
        lines.append(f"  programming: empirical lookup table at {len(p.levels)} levels x {len(p.probs)} quantiles "
                     f"(deviation range {min(min(r) for r in p.quantiles):.4g} .. {max(max(r) for r in p.quantiles):.4g} {u})")
    else:
        unit = "(log-units)" if p.family_obj.transform == "log" else u
        lines.append(f"  programming: {p.family} ({p.family_obj.description})")
        lines.append(f"    loc(target)   = {p.loc.describe(unit)}")
        lines.append(f"    scale(target) = {p.scale.describe(unit)}")
        for k, v in p.shape.items():
            lines.append(f"    {k} = {v:.4g} (dimensionless)")
    d = model.drift
    if d is not None:
        lines.append(f"  drift: g(t) = g(t0) (t/t0)^-nu for t > t0 = {d.t0_s:g} s; nu per device "
                     f"{'folded |N(mean, std)|' if d.fold else 'N(mean, std)'}")
        lines.append(f"    nu mean(target) = {d.nu_mean.describe('(dimensionless)')}")
        lines.append(f"    nu std(target)  = {d.nu_std.describe('(dimensionless)')}")
    r = model.read_noise
    if r is not None:
        lines.append(f"  read noise: |g| * q * sqrt(log((t + t_read)/(2 t_read))) * N(0,1) per read, t_read = {r.t_read_s:g} s")
        lines.append(f"    q(target) = {r.q.describe('(relative)')}")
    s = model.stuck
    if s is not None and (s.p_low > 0 or s.p_high > 0):
        lines.append(f"  stuck-at: low {s.p_low:.4%} at {s.g_low:.4g} {u} (spread {s.spread_low:.3g} {u}), "
                     f"high {s.p_high:.4%} at {s.g_high:.4g} {u} (spread {s.spread_high:.3g} {u})")
    c = model.chip_gain
    if c is not None:
        lines.append(f"  chip-to-chip gain: exp(sigma z), sigma = {c.sigma:.4g} (log-units, one draw per chip)")
    return "\n".join(lines)
