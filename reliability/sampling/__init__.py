"""Chips as random variables: plain Monte Carlo, subset simulation, mean-shift importance sampling and
the hybrid (importance sampling along the failure modes' design points plus subset simulation) in the
chips' latent Gaussian space; tail probabilities P(accuracy <= a) and k-th percentile accuracy, with
uncertainty and reliability verdicts.  Every estimator implements one interface
(:class:`TailEstimator`: ``run(problem, *, budget, rng, ...) -> EstimatorRun``).  Drives
:mod:`reliability.cim`; knows nothing of reports.  Dask is imported only by
:mod:`reliability.sampling.parallel`, when a client is made."""

from reliability.sampling.hybrid import HybridSampling
from reliability.sampling.importance import MeanShiftImportanceSampling
from reliability.sampling.montecarlo import PlainMonteCarlo
from reliability.sampling.protocol import EstimatorRun, TailEstimator, TailProblem
from reliability.sampling.results import QuantileEstimate, TailEstimate, TailResult
from reliability.sampling.subset import SubsetSimulation
from reliability.sampling.tail import ESTIMATORS, METHODS, estimate_tail

__all__ = ["estimate_tail", "TailResult", "TailEstimate", "QuantileEstimate", "TailProblem", "EstimatorRun",
           "TailEstimator", "SubsetSimulation", "HybridSampling", "MeanShiftImportanceSampling", "PlainMonteCarlo",
           "ESTIMATORS", "METHODS"]
