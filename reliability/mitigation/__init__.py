"""Mitigation strategies, what they cost, and a ranking by cost against robustness.

- :mod:`~reliability.mitigation.catalogue`: the mitigations (write-verify, SWIM, replicas, bit
  slicing, differential pairs, ADC/DAC precision, drift compensation, refresh), each a transform of
  a :class:`Design`, parsed from strings like ``"swim:fraction=0.1 + adc:bits=6"``;
- :mod:`~reliability.mitigation.costs`: the cost vector with units from a sourced cost file;
- :mod:`~reliability.mitigation.selection`: SWIM's weight sensitivities;
- :mod:`~reliability.mitigation.training`: noise-injection fine-tuning through the core's gradients;
- :mod:`~reliability.mitigation.rank`: :func:`rank`, on common random numbers.

>>> from reliability.mitigation import parse_mitigation
>>> str(parse_mitigation("write-verify:tolerance=0.02 + adc:bits=6"))
'write-verify:tolerance=0.02 + adc:bits=6'
"""

from reliability.mitigation.catalogue import (
    CATALOGUE, AdcPrecision, BitSlicing, Combination, Context, DacPrecision, Design, Differential, DriftCompensation,
    Mitigation, NoiseAwareTraining, RESIDUALS, Refresh, Replicas, ResidualWriteVerify, SelectiveWriteVerify,
    SpareColumns, WriteVerify, parse_mitigation,
)
from reliability.mitigation.costs import COST_UNITS, Cost, CostModel, design_costs
from reliability.mitigation.rank import CandidateResult, Metric, Ranking, Robustness, crn_signature, parse_metric, rank
from reliability.mitigation.selection import SELECTIONS, top_fraction_mask, weight_scores
from reliability.mitigation.training import TrainingHistory, finetune

__all__ = [
    "CATALOGUE", "AdcPrecision", "BitSlicing", "Combination", "Context", "DacPrecision", "Design", "Differential",
    "DriftCompensation", "Mitigation", "NoiseAwareTraining", "Refresh", "Replicas", "ResidualWriteVerify", "RESIDUALS", "SelectiveWriteVerify", "SpareColumns", "WriteVerify", "parse_mitigation",
    "COST_UNITS", "Cost", "CostModel", "design_costs", "CandidateResult", "Metric", "Ranking", "Robustness",
    "crn_signature", "parse_metric", "rank", "SELECTIONS", "top_fraction_mask", "weight_scores", "TrainingHistory",
    "finetune",
]
