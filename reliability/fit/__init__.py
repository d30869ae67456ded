"""From measurement data to a device model: maximum-likelihood fits (scipy) of every variation
family, state-dependent models, censoring, stuck-at mixtures, drift, chip gain, goodness of fit
and tail-aware model selection.  Hierarchical Bayesian fits (PyMC NUTS, ArviZ) in :mod:`reliability.fit.bayes`.
"""

from reliability.fit.bayes import BayesFitResult, FitFailedError, fit_device_bayes
from reliability.fit.device import CANDIDATE_FAMILIES, CandidateFit, DeviceFitResult, fit_device
from reliability.fit.gof import GoodnessOfFit, goodness_of_fit

__all__ = ["fit_device", "fit_device_bayes", "BayesFitResult", "FitFailedError", "DeviceFitResult", "CandidateFit", "CANDIDATE_FAMILIES", "GoodnessOfFit", "goodness_of_fit"]
