"""Model import: ONNX files, scikit-learn MLPs and ``.npz`` layer files -> :class:`Network`.

Entry points: :func:`load_model` (dispatch on suffix or type), :func:`load_onnx`,
:func:`from_sklearn`, :func:`load_npz` and :func:`save_npz`.  Models are never unpickled: a
scikit-learn estimator is passed as a Python object.

ONNX
----
One graph input (initializers listed as inputs are ignored) and one graph output; default-domain
opset 9 or later; every supported op is tested against onnxruntime at opsets 9, 11, 12, 13
and 19 (a later opset is read, untested).  A node with an attribute its op does not have at the
model's opset is refused.  The op types of
:data:`reliability.cim.graph.SUPPORTED_OPS` are supported; anything else raises
:class:`~reliability.errors.ModelSpecError` naming the op type and the node.  Gemm, MatMul and Conv
whose weight is an initializer become analog layers; their bias (and a directly following
``Add`` of a constant channel vector or an inference ``BatchNormalization``) is folded into the
layer's weights and digital bias.  The first input dimension is the batch: its size in the file is
ignored.

``.npz`` layer format (``nvcim-reliability/layers-v1``)
------------------------------------------------------
A plain ``numpy.savez`` archive (no pickled objects) describing a sequential network:

=========================  ===================================================================
key                        meaning
=========================  ===================================================================
``format``                 the string ``"nvcim-reliability/layers-v1"``
``n_layers``               number of layers ``L`` (int)
``input_shape``            per-sample input shape, ints, without the batch axis, e.g. ``[64]``
                           or ``[1, 28, 28]`` (channels first)
``layer{i}_type``          for ``i = 0 .. L-1``: one of ``dense``, ``conv2d``, ``relu``, ``tanh``,
                           ``sigmoid``, ``leaky_relu``, ``flatten``, ``maxpool2d``,
                           ``avgpool2d``, ``softmax``
``layer{i}_W``             ``dense``: ``(in, out)``, applied as ``x @ W`` over the last axis;
                           ``conv2d``: ``(O, C/groups, kh, kw)`` like ONNX/PyTorch
``layer{i}_b``             optional bias: ``(out,)`` / ``(O,)``
``layer{i}_stride``        ``conv2d``, pools: int or ``[sh, sw]`` (conv default 1, pool default
                           the kernel)
``layer{i}_pad``           ``conv2d``, pools: int, ``[ph, pw]`` or ``[top, left, bottom, right]``
                           (default 0)
``layer{i}_dilation``      ``conv2d``: int or ``[dh, dw]`` (default 1)
``layer{i}_groups``        ``conv2d``: int (default 1)
``layer{i}_kernel``        pools: int or ``[kh, kw]`` (required)
``layer{i}_count_include_pad``  ``avgpool2d``: 0 or 1 (default 0, as in ONNX)
``layer{i}_alpha``         ``leaky_relu``: negative slope (default 0.01)
``layer{i}_axis``          ``softmax``: axis counted with the batch axis (default -1)
=========================  ===================================================================

``flatten`` flattens everything but the batch axis.  Arrays are stored as float64.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from reliability._json import atomic_output
from reliability.cim.graph import GraphNode, Network, build_network
from reliability.cim.graph.ops_analog import _AnalogConv, _AnalogDense
from reliability.cim.graph.ops_elementwise import _Flatten, _Softmax, _Unary
from reliability.cim.graph.ops_pool import _Pool
from reliability.errors import ModelSpecError, option

__all__ = ["load_model", "load_onnx", "from_sklearn", "load_npz", "save_npz", "save_onnx", "NPZ_FORMAT"]

NPZ_FORMAT = "nvcim-reliability/layers-v1"
_NPZ_TYPES = ("dense", "conv2d", "relu", "tanh", "sigmoid", "leaky_relu", "flatten", "maxpool2d",
              "avgpool2d", "softmax")


# --------------------------------------------------------------------------------------------
# dispatch


def load_model(model) -> Network:
    """Load a network from a path or an in-memory model.

    Parameters
    ----------
    model : str, Path, onnx.ModelProto, MLPClassifier, MLPRegressor or Network
        ``.onnx`` and ``.npz`` files are read by :func:`load_onnx` / :func:`load_npz`; an ONNX
        ``ModelProto`` by :func:`load_onnx`; a fitted scikit-learn MLP by :func:`from_sklearn`.
        A :class:`Network` is returned as is.
    """
    if isinstance(model, Network):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        suf = path.suffix.lower()
        if suf == ".onnx":
            return load_onnx(path)
        if suf == ".npz":
            return load_npz(path)
        if suf in (".pkl", ".pickle", ".joblib", ".sav"):
            raise ModelSpecError(
                f"model {str(path)!r}: pickled models are not loaded (unpickling runs arbitrary "
                f"code).  Load the estimator yourself in Python and pass the object, or export it "
                f"to ONNX or to the .npz layer format (reliability.cim.save_npz)")
        raise ModelSpecError(
            f"model {str(path)!r}: unknown file type {suf or '(no suffix)'!r}; supported are .onnx "
            f"and .npz files, or a fitted scikit-learn MLPClassifier/MLPRegressor object")
    if type(model).__name__ == "ModelProto":
        return load_onnx(model)
    if type(model).__name__ in ("MLPClassifier", "MLPRegressor"):
        return from_sklearn(model)
    raise ModelSpecError(
        f"cannot load a model from an object of type {type(model).__name__}; pass a path to an "
        f".onnx or .npz file, an onnx.ModelProto, or a fitted scikit-learn MLPClassifier/"
        f"MLPRegressor")


# --------------------------------------------------------------------------------------------
# ONNX


def _import_onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ModelSpecError("reading ONNX models needs the onnx package: pip install onnx") from e
    return onnx, numpy_helper


def _tensor_array(numpy_helper, t) -> np.ndarray:
    a = numpy_helper.to_array(t)
    if a.dtype.kind == "f":
        a = a.astype(np.float64)
    return np.array(a)


def _dims(vi):
    """Dims of a ValueInfo (None for symbolic/unknown), or None if the shape is unknown."""
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in tt.shape.dim]


def load_onnx(model) -> Network:
    """Import an ONNX model (path or ``onnx.ModelProto``).

    Raises
    ------
    ModelSpecError
        Missing file, not an ONNX model, unsupported op, several inputs or outputs, dynamic
        (non-initializer) analog weights, NaN/inf initializers, ...
    """
    onnx, numpy_helper = _import_onnx()
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise ModelSpecError(f"model file {str(path)!r} does not exist; check the path")
        try:
            proto = onnx.load(str(path))
        except Exception as e:
            raise ModelSpecError(
                f"model file {str(path)!r} is not a readable ONNX model ({type(e).__name__}: {e}); "
                f"export it with torch.onnx.export or check the file") from e
        source = str(path)
        if len(proto.graph.node) == 0 and not proto.graph.input:
            raise ModelSpecError(f"model file {str(path)!r} is not an ONNX model (empty graph)")
    elif isinstance(model, onnx.ModelProto):
        proto, source = model, (model.graph.name or "onnx model")
    else:
        raise ModelSpecError(f"load_onnx needs a path or an onnx.ModelProto, got "
                             f"{type(model).__name__}")
    graph = proto.graph
    opset = None
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = int(imp.version)
    if opset is None:
        raise ModelSpecError(f"{source}: the model imports no default-domain (ai.onnx) opset")
    if opset < 9:
        raise ModelSpecError(f"{source}: opset {opset} is too old (9 to 19 are supported and tested); "
                             f"re-export with a newer opset_version")
    # a node's attributes must exist at the model's own opset (ceil_mode before opset 10 would
    # otherwise be read with the newer semantics); unknown op types are named later
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        try:
            schema = onnx.defs.get_schema(node.op_type, opset)
        except onnx.defs.SchemaError:
            continue
        extra = sorted(a.name for a in node.attribute if a.name not in schema.attributes)
        if extra:
            raise ModelSpecError(
                f"{source}: node {node.name or node.op_type!r} ({node.op_type}) has attribute(s) {extra} that "
                f"{node.op_type} does not have at the model's opset {opset} (version {schema.since_version} of "
                f"the op); re-export with a newer opset_version or drop the attribute")
    if len(graph.sparse_initializer):
        raise ModelSpecError(f"{source}: sparse initializers are not supported")
    consts = {t.name: _tensor_array(numpy_helper, t) for t in graph.initializer}
    inputs = [vi for vi in graph.input if vi.name not in consts]
    if len(inputs) != 1:
        raise ModelSpecError(
            f"{source}: the graph has {len(inputs)} inputs ({', '.join(v.name for v in inputs)}) "
            f"besides its initializers; exactly one data input is supported")
    if len(graph.output) != 1:
        raise ModelSpecError(
            f"{source}: the graph has {len(graph.output)} outputs "
            f"({', '.join(v.name for v in graph.output)}); exactly one (the logits) is supported")
    inp = inputs[0]
    et = inp.type.tensor_type.elem_type
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                   onnx.TensorProto.BFLOAT16}
    if not inp.type.HasField("tensor_type") or et not in float_types:
        raise ModelSpecError(f"{source}: input {inp.name!r} must be a floating-point tensor "
                             f"(elem_type {et})")
    dims = _dims(inp)
    if dims is None or len(dims) < 1:
        raise ModelSpecError(f"{source}: input {inp.name!r} has no known rank; the model must "
                             f"declare its input shape (batch first)")
    declared_batch = dims[0]
    out_dims = _dims(graph.output[0])
    ranks = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
        for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
            d = _dims(vi)
            if d is not None:
                ranks[vi.name] = len(d)
    except Exception:
        ranks = {}  # shape inference failed: ranks only enable optional fusions, so go without them
    nodes = []
    for n in graph.node:
        attrs = {}
        for a in n.attribute:
            v = onnx.helper.get_attribute_value(a)
            if isinstance(v, onnx.TensorProto):
                v = _tensor_array(numpy_helper, v)
            elif isinstance(v, bytes):
                v = v.decode()
            elif isinstance(v, list):
                v = [x.decode() if isinstance(x, bytes) else x for x in v]
            attrs[a.name] = v
        nodes.append(GraphNode(n.op_type, n.name, list(n.input), list(n.output), attrs, n.domain))
    return build_network(
        nodes, consts, input_name=inp.name, input_shape=tuple(dims[1:]),
        output_name=graph.output[0].name,
        output_shape=None if out_dims is None else tuple(out_dims[1:]),
        value_ranks=ranks, declared_batch=declared_batch, opset=opset, source=source)


# --------------------------------------------------------------------------------------------
# scikit-learn


def from_sklearn(estimator) -> Network:
    """Import a fitted scikit-learn ``MLPClassifier`` or ``MLPRegressor``.

    Every ``coefs_[i]``/``intercepts_[i]`` pair becomes a Gemm analog layer with a digital bias,
    followed by the hidden activation.  The network outputs the pre-activation of the output
    layer: class logits for a (multi-class) classifier, so that ``argmax`` matches ``predict``
    (``classes`` maps the index to the label); for a binary classifier (one output unit ``z``)
    the two logits ``[0, z]``; for a multi-label classifier the per-label logits; for a regressor
    its predictions.
    """
    try:
        from sklearn.neural_network import MLPClassifier, MLPRegressor
    except ImportError as e:  # pragma: no cover
        raise ModelSpecError("from_sklearn needs scikit-learn installed") from e
    if not isinstance(estimator, (MLPClassifier, MLPRegressor)):
        raise ModelSpecError(f"from_sklearn supports MLPClassifier and MLPRegressor, got "
                             f"{type(estimator).__name__}")
    if not hasattr(estimator, "coefs_"):
        raise ModelSpecError(f"the {type(estimator).__name__} is not fitted; call fit() first")
    act = {"relu": "Relu", "tanh": "Tanh", "logistic": "Sigmoid", "identity": None}
    if estimator.activation not in act:
        raise ModelSpecError(f"unsupported MLP activation {estimator.activation!r}; supported: "
                             f"{', '.join(act)}")
    consts, nodes = {}, []
    cur = "x"
    n_layers = len(estimator.coefs_)
    for i, (W, b) in enumerate(zip(estimator.coefs_, estimator.intercepts_)):
        consts[f"W{i}"] = np.asarray(W, dtype=np.float64)
        consts[f"b{i}"] = np.asarray(b, dtype=np.float64)
        out = f"z{i}"
        nodes.append(GraphNode("Gemm", f"dense{i}", [cur, f"W{i}", f"b{i}"], [out]))
        cur = out
        if i < n_layers - 1 and act[estimator.activation]:
            nodes.append(GraphNode(act[estimator.activation], f"act{i}", [cur], [f"a{i}"]))
            cur = f"a{i}"
    classes = None
    if isinstance(estimator, MLPClassifier):
        classes = estimator.classes_
        binary = (estimator.out_activation_ == "logistic" and estimator.coefs_[-1].shape[1] == 1
                  and len(estimator.classes_) == 2)
        if binary:
            consts["binary_logits"] = np.array([0.0, 1.0])
            nodes.append(GraphNode("Mul", "binary_logits", [cur, "binary_logits"], ["logits"]))
            cur = "logits"
    return build_network(nodes, consts, input_name="x", input_shape=(int(estimator.n_features_in_),),
                         output_name=cur, classes=classes, source=type(estimator).__name__)


# --------------------------------------------------------------------------------------------
# .npz layer files


def _pair(v, key, n=2, what="ints"):
    a = np.asarray(v).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, n)
    if a.size != n:
        raise ModelSpecError(f"{key} must be one int or {n} ints, got {np.asarray(v).tolist()}")
    return [int(x) for x in a]


def _pads(v, key):
    a = np.asarray(v).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, 4)
    elif a.size == 2:
        a = np.concatenate([a, a])
    if a.size != 4:
        raise ModelSpecError(f"{key} must be an int, [ph, pw] or [top, left, bottom, right], got "
                             f"{np.asarray(v).tolist()}")
    return [int(x) for x in a]


def load_npz(path) -> Network:
    """Read a network in the ``.npz`` layer format (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ModelSpecError(f"model file {str(path)!r} does not exist; check the path")
    try:
        z = np.load(path, allow_pickle=False)
        data = {k: z[k] for k in z.files}
    except Exception as e:
        raise ModelSpecError(f"{str(path)!r} is not a readable .npz archive of plain arrays "
                             f"({type(e).__name__}: {e})") from e

    def get(key, default=...):
        if key not in data:
            if default is ...:
                raise ModelSpecError(f"{str(path)!r}: key {key!r} is missing (see the .npz layer "
                                     f"format in reliability.cim.importers)")
            return default
        return data[key]

    fmt = str(get("format"))
    if fmt != NPZ_FORMAT:
        raise ModelSpecError(f"{str(path)!r}: format is {fmt!r}; expected {NPZ_FORMAT!r}")
    n = int(get("n_layers"))
    input_shape = tuple(int(d) for d in np.asarray(get("input_shape")).reshape(-1))
    consts, nodes = {}, []
    cur = "x"
    for i in range(n):
        p = f"layer{i}_"
        t = str(get(p + "type"))
        if t not in _NPZ_TYPES:
            raise ModelSpecError(f"{str(path)!r}: {p}type is {t!r}; supported: "
                                 f"{', '.join(_NPZ_TYPES)}")
        out = f"v{i}"
        name = f"layer{i}_{t}"
        if t in ("dense", "conv2d"):
            W = np.asarray(get(p + "W"), dtype=np.float64)
            consts[p + "W"] = W
            ins = [cur, p + "W"]
            if p + "b" in data:
                consts[p + "b"] = np.asarray(data[p + "b"], dtype=np.float64).reshape(-1)
                ins.append(p + "b")
            if t == "dense":
                if W.ndim != 2:
                    raise ModelSpecError(f"{str(path)!r}: {p}W must be (in, out), got {W.shape}")
                nodes.append(GraphNode("Gemm", name, ins, [out]))
            else:
                if W.ndim != 4:
                    raise ModelSpecError(f"{str(path)!r}: {p}W must be (O, C/groups, kh, kw), got "
                                         f"{W.shape}")
                attrs = {"strides": _pair(get(p + "stride", 1), p + "stride"),
                         "pads": _pads(get(p + "pad", 0), p + "pad"),
                         "dilations": _pair(get(p + "dilation", 1), p + "dilation"),
                         "group": int(get(p + "groups", 1))}
                nodes.append(GraphNode("Conv", name, ins, [out], attrs))
        elif t in ("relu", "tanh", "sigmoid"):
            nodes.append(GraphNode({"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}[t], name,
                                   [cur], [out]))
        elif t == "leaky_relu":
            nodes.append(GraphNode("LeakyRelu", name, [cur], [out],
                                   {"alpha": float(get(p + "alpha", 0.01))}))
        elif t == "flatten":
            nodes.append(GraphNode("Flatten", name, [cur], [out], {"axis": 1}))
        elif t in ("maxpool2d", "avgpool2d"):
            k = _pair(get(p + "kernel"), p + "kernel")
            attrs = {"kernel_shape": k, "strides": _pair(get(p + "stride", k), p + "stride"),
                     "pads": _pads(get(p + "pad", 0), p + "pad")}
            if t == "avgpool2d":
                attrs["count_include_pad"] = int(get(p + "count_include_pad", 0))
            nodes.append(GraphNode("MaxPool" if t == "maxpool2d" else "AveragePool", name, [cur],
                                   [out], attrs))
        elif t == "softmax":
            nodes.append(GraphNode("Softmax", name, [cur], [out], {"axis": int(get(p + "axis", -1))}))
        cur = out
    if not nodes:
        raise ModelSpecError(f"{str(path)!r}: the network has no layers")
    return build_network(nodes, consts, input_name="x", input_shape=input_shape, output_name=cur,
                         source=str(path))


def _chain(network: Network, target: str) -> list[dict]:
    """The network as a chain of layers (``type`` and parameters, clean weights), for the writers;
    :class:`ModelSpecError` for what a chain of these layers cannot express."""
    if not isinstance(network, Network):
        raise ModelSpecError(f"save_{target} needs a Network, got {type(network).__name__}")
    if any(d is None for d in network.input_shape):
        raise ModelSpecError(f"save_{target} needs a fully known input shape, got {network.input_shape}")
    cur = network.input_name
    layers = network.analog_layers
    chain = []

    def fail(op, why):
        raise ModelSpecError(f"cannot write node {op.name!r} ({op.op_type}) as a chain of layers ({target}): {why}")

    for op in network.ops:
        if list(op.inputs[:1]) != [cur]:
            fail(op, "the network is not a simple chain of layers")
        if isinstance(op, _AnalogDense):
            if op.swap_in or op.swap_out:
                fail(op, "transposed operands")
            layer = layers[op.index]
            chain.append({"type": "dense", "W": np.asarray(layer.weight, np.float64),
                          "b": None if layer.bias is None else np.asarray(layer.bias, np.float64)})
        elif isinstance(op, _AnalogConv):
            w = op.win
            if w.nd != 2:
                fail(op, "only 2-D convolutions")
            if w.auto_pad not in ("NOTSET", "VALID"):
                fail(op, f"auto_pad {w.auto_pad}")
            og = op.out_channels // op.group
            kh, kw = w.kernel
            gs = [layers[op.first + g] for g in range(op.group)]
            b = None
            if any(g.bias is not None for g in gs):
                b = np.concatenate([g.bias if g.bias is not None else np.zeros(og) for g in gs])
            chain.append({"type": "conv2d", "W": np.concatenate([g.weight.T.reshape(og, op.cg, kh, kw) for g in gs]),
                          "b": b, "stride": tuple(w.strides), "pad": tuple(w.pads if w.auto_pad == "NOTSET" else (0, 0, 0, 0)),
                          "dilation": tuple(w.dilations), "groups": int(op.group)})
        elif isinstance(op, _Unary):
            if op.op_type in ("Identity", "Dropout"):
                continue
            if op.op_type not in ("Relu", "Tanh", "Sigmoid", "LeakyRelu"):
                fail(op, "op type not in the format")
            chain.append({"type": {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid",
                                   "LeakyRelu": "leaky_relu"}[op.op_type], "alpha": getattr(op, "alpha", None)})
        elif isinstance(op, _Flatten):
            if op.axis != 1:
                fail(op, f"Flatten axis {op.axis} (only 1)")
            chain.append({"type": "flatten"})
        elif isinstance(op, _Pool):
            w = op.win
            if w.nd != 2 or w.auto_pad not in ("NOTSET", "VALID") or w.ceil_mode \
                    or any(d != 1 for d in w.dilations):
                fail(op, "only 2-D pools with explicit padding, floor mode and no dilation")
            chain.append({"type": "maxpool2d" if op.op_type == "MaxPool" else "avgpool2d", "kernel": tuple(w.kernel),
                          "stride": tuple(w.strides), "pad": tuple(w.pads if w.auto_pad == "NOTSET" else (0, 0, 0, 0)),
                          "count_include_pad": int(getattr(op, "count_include_pad", 0))})
        elif isinstance(op, _Softmax):
            if op.legacy:
                fail(op, "opset < 13 Softmax semantics")
            chain.append({"type": "softmax", "axis": int(op.axis)})
        else:
            fail(op, "op type not in the format")
        cur = op.outputs[0]
    return chain


def save_npz(network: Network, path) -> None:
    """Write a sequential network in the ``.npz`` layer format (see the module docstring).

    The clean weights are written (BatchNormalization already folded).  Networks with ops the
    format cannot express (Reshape, Transpose, Add of two branches, 1-D convolutions, SAME
    padding, ...) raise :class:`ModelSpecError`; export those to ONNX with your framework.
    """
    out = {"format": np.array(NPZ_FORMAT)}
    chain = _chain(network, "npz")
    out["input_shape"] = np.array(network.input_shape, np.int64)
    for i, layer in enumerate(chain):
        p = f"layer{i}_"
        t = layer["type"]
        out[p + "type"] = np.array(t)
        if t in ("dense", "conv2d"):
            out[p + "W"] = layer["W"]
            if layer["b"] is not None:
                out[p + "b"] = layer["b"]
        if t == "conv2d":
            for k in ("stride", "pad", "dilation", "groups"):
                out[p + k] = np.array(layer[k])
        elif t == "leaky_relu":
            out[p + "alpha"] = np.array(layer["alpha"])
        elif t in ("maxpool2d", "avgpool2d"):
            for k in ("kernel", "stride", "pad"):
                out[p + k] = np.array(layer[k])
            if t == "avgpool2d":
                out[p + "count_include_pad"] = np.array(layer["count_include_pad"])
        elif t == "softmax":
            out[p + "axis"] = np.array(layer["axis"])
    out["n_layers"] = np.array(len(chain))
    path = Path(path) if str(path).endswith(".npz") else Path(f"{path}.npz")      # as numpy.savez names it
    with atomic_output(path) as tmp:
        np.savez(tmp, **out)


def save_onnx(network: Network, path, overwrite: bool = False, opset: int = 17) -> Path:
    """Write a sequential network (the layers :func:`save_npz` can write) as an ONNX model with
    its clean weights in float32, e.g. a network after hardware-aware fine-tuning.

    Dense layers become ``Gemm`` (``B = W``, ``transB = 0``), convolutions ``Conv``; the batch axis
    is left open.  Refuses to overwrite ``path`` unless ``overwrite``."""
    from onnx import TensorProto, checker, helper, numpy_helper, save_model

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass {option('overwrite')} or choose another path.")
    chain = _chain(network, "onnx")
    nodes, inits = [], []
    cur = "input"
    for i, layer in enumerate(chain):
        t, out = layer["type"], f"t{i}"
        if t in ("dense", "conv2d"):
            names = [cur, f"W{i}"]
            inits.append(numpy_helper.from_array(np.asarray(layer["W"], np.float32), f"W{i}"))
            if layer["b"] is not None:
                inits.append(numpy_helper.from_array(np.asarray(layer["b"], np.float32), f"b{i}"))
                names.append(f"b{i}")
            if t == "dense":
                nodes.append(helper.make_node("Gemm", names, [out], name=f"dense{i}"))
            else:
                nodes.append(helper.make_node("Conv", names, [out], name=f"conv{i}", strides=list(layer["stride"]),
                                              pads=list(layer["pad"]), dilations=list(layer["dilation"]),
                                              group=layer["groups"], kernel_shape=list(layer["W"].shape[2:])))
        elif t in ("relu", "tanh", "sigmoid"):
            nodes.append(helper.make_node(t.capitalize(), [cur], [out], name=f"{t}{i}"))
        elif t == "leaky_relu":
            nodes.append(helper.make_node("LeakyRelu", [cur], [out], name=f"leaky_relu{i}", alpha=float(layer["alpha"])))
        elif t == "flatten":
            nodes.append(helper.make_node("Flatten", [cur], [out], name=f"flatten{i}", axis=1))
        elif t in ("maxpool2d", "avgpool2d"):
            kw = dict(kernel_shape=list(layer["kernel"]), strides=list(layer["stride"]), pads=list(layer["pad"]))
            if t == "avgpool2d":
                kw["count_include_pad"] = layer["count_include_pad"]
            nodes.append(helper.make_node("MaxPool" if t == "maxpool2d" else "AveragePool", [cur], [out],
                                          name=f"{t}{i}", **kw))
        elif t == "softmax":
            nodes.append(helper.make_node("Softmax", [cur], [out], name=f"softmax{i}", axis=layer["axis"]))
        cur = out
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *network.input_shape])
    n_out = network.n_outputs
    outp = helper.make_tensor_value_info(cur, TensorProto.FLOAT, ["batch", n_out] if n_out else ["batch", "outputs"])
    graph = helper.make_graph(nodes, "nvcim-reliability", [inp], [outp], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", int(opset))],
                              producer_name="nvcim-reliability")
    checker.check_model(model)
    with atomic_output(path) as tmp:
        save_model(model, str(tmp))
    return path
