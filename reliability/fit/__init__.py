"""From measurement data to a device model: maximum-likelihood fits (scipy) of every variation
family, state-dependent models, censoring, stuck-at mixtures, drift, chip gain, goodness of fit
and tail-aware model selection.  Hierarchical Bayesian fits (PyMC NUTS, ArviZ) in :mod:`reliability.fit.bayes`.
"""

from reliability.errors import FitFailedError
from reliability.fit.bayes import BayesFitResult, fit_device_bayes
from reliability.fit.device import CandidateFit, DeviceFitResult, fit_device
from reliability.fit.gof import GoodnessOfFit, goodness_of_fit

__all__ = ["fit_device", "fit_device_bayes", "BayesFitResult", "FitFailedError", "DeviceFitResult", "CandidateFit", "GoodnessOfFit", "goodness_of_fit"]
