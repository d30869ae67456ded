"""The accelerator: model import, the batched network executor and its gradients.

``Network.forward`` runs a trained network for many chips at once; every analog matrix product
goes through a callback where the crossbar layer replaces weights and applies DAC/ADC.
"""

from reliability.cim.graph import (
    SUPPORTED_OPS, AnalogLayer, Cache, Gradients, GraphNode, Network, build_network, margin,
    softmax_cross_entropy,
)
from reliability.cim._kernels import correct_and_loss, correct_and_margins
from reliability.cim.importers import NPZ_FORMAT, from_sklearn, load_model, load_npz, load_onnx, save_npz, save_onnx
from reliability.cim.spec import ChipSpec, MappingSpec, PeripherySpec, parse_variation
from reliability.cim.mapping import LayerMapping
from reliability.cim.simulate import ChipSimulator, SimulationResult, chip_rng

__all__ = [
    "SUPPORTED_OPS", "AnalogLayer", "Cache", "Gradients", "GraphNode", "Network", "build_network",
    "margin", "softmax_cross_entropy", "correct_and_loss", "correct_and_margins",
    "NPZ_FORMAT", "from_sklearn", "load_model", "load_npz", "load_onnx", "save_npz", "save_onnx",
    "ChipSpec", "MappingSpec", "PeripherySpec", "parse_variation", "LayerMapping", "ChipSimulator",
    "SimulationResult", "chip_rng",
]
