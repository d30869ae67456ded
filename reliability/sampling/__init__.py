"""Chips as random variables: plain Monte Carlo, subset simulation and the hybrid (importance
sampling along the failure modes' design points plus subset simulation) in the chips' latent
Gaussian space, tail probabilities P(accuracy <= a), k-th percentile accuracy, with uncertainty
and reliability verdicts.  Drives :mod:`reliability.cim`; knows nothing of reports."""

from reliability.sampling.hybrid import HybridSampling
from reliability.sampling.results import QuantileEstimate, TailEstimate, TailResult
from reliability.sampling.subset import SubsetSimulation
from reliability.sampling.tail import METHODS, estimate_tail

__all__ = ["estimate_tail", "TailResult", "TailEstimate", "QuantileEstimate", "SubsetSimulation", "HybridSampling",
           "METHODS"]
