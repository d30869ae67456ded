"""From measurement data to a device model: maximum-likelihood fits (scipy) of every variation
family, state-dependent models, censoring, stuck-at mixtures, drift, chip gain, goodness of fit
and tail-aware model selection.  Bayesian fits (PyMC) join here in a later release.
"""

from reliability.fit.device import CANDIDATE_FAMILIES, CandidateFit, DeviceFitResult, fit_device
from reliability.fit.gof import GoodnessOfFit, goodness_of_fit

__all__ = ["fit_device", "DeviceFitResult", "CandidateFit", "CANDIDATE_FAMILIES", "GoodnessOfFit", "goodness_of_fit"]
