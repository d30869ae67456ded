"""The network graph layer: a trained network as a topologically ordered list of small ops over
named values, run for many chips at once (forward) and differentiated per chip (backward).

Every value carries a leading chip axis; every analog matrix product is an :class:`AnalogLayer`
whose weights may be replaced per chip and whose product goes through an optional ``matmul`` hook
(where the crossbar applies DAC/ADC).  The modules, from the bottom up:

- :mod:`~reliability.cim.graph.ir`: the data types (:class:`AnalogLayer`, :class:`GraphNode`,
  :class:`Cache`, :class:`Gradients`), the op interface and the per-call runtime;
- :mod:`~reliability.cim.graph.window`: sliding-window geometry and memory-layout helpers;
- :mod:`~reliability.cim.graph.ops_elementwise`, :mod:`~reliability.cim.graph.ops_pool`,
  :mod:`~reliability.cim.graph.ops_analog`: the ops, forward and backward;
- :mod:`~reliability.cim.graph.losses`: :func:`margin` and :func:`softmax_cross_entropy`;
- :mod:`~reliability.cim.graph.executor`: :class:`Network`;
- :mod:`~reliability.cim.graph.builder`: :func:`build_network` (ONNX-semantics nodes to a
  :class:`Network`, BatchNormalization folded into the weights).
"""

from reliability.cim.graph.builder import SUPPORTED_OPS, build_network
from reliability.cim.graph.executor import Network
from reliability.cim.graph.ir import AnalogLayer, Cache, Gradients, GraphNode
from reliability.cim.graph.losses import margin, softmax_cross_entropy

__all__ = [
    "AnalogLayer", "Network", "Cache", "Gradients", "GraphNode", "build_network",
    "margin", "softmax_cross_entropy", "SUPPORTED_OPS",
]
