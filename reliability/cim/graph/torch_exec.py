"""The network's forward pass in PyTorch, for GPUs: the same graph and weights as
:meth:`Network.forward <reliability.cim.graph.Network.forward>`, run as torch tensors on a device.

Optional (the ``[torch]`` extra) and imported only when a simulator is made with
``backend="torch"``.  The chips themselves are not touched: every device is drawn and mapped by the
numpy core, so chip ``i`` is the same chip on either backend; only the products and the ops after
them run in torch.  Their float32 results agree with the numpy backend's to float32 rounding (the
summation order of a product differs between BLAS libraries), not bit for bit; the test suite
checks the logits to a relative 1e-5 and the counts of correct samples exactly on its networks.  A
tail estimate with the same seed agrees within its error, not exactly: a margin a rounding apart
can flip a Markov chain's accept/reject decision, after which the runs draw different chips.

Ops run in torch: the analog products (Gemm, MatMul, Conv, 2-D and grouped), the activations,
2-D MaxPool and AveragePool, GlobalAveragePool, Flatten, the broadcasting arithmetic and Softmax.
Any other op runs in numpy on the host, its inputs copied back and its output copied over: correct,
and slow only on a GPU (:attr:`TorchForward.host_ops` names them).
"""

from __future__ import annotations

import numpy as np

from reliability.errors import MissingDependencyError, ReliabilityError

__all__ = ["TorchForward", "torch_device"]


def _torch():
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("the torch backend needs PyTorch, which is optional and not installed: "
                                     "pip install 'nvcim-reliability[torch]' (or use backend='numpy')") from None
    return torch


def torch_device(spec: str = "torch"):
    """The torch device of a backend name: ``"torch"`` (CUDA when available, else the CPU),
    ``"torch:cpu"``, ``"torch:cuda"``, ``"torch:cuda:1"``, ..."""
    torch = _torch()
    name = spec.partition(":")[2]
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ReliabilityError(f"backend {spec!r}: {e}; use 'torch', 'torch:cpu' or 'torch:cuda[:N]'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ReliabilityError(f"backend {spec!r}: this PyTorch sees no CUDA device; use 'torch:cpu' or 'numpy'.")
    return dev


class TorchForward:
    """``network``'s forward pass on ``device`` (see the module docstring)."""

    def __init__(self, network, device):
        self.torch = _torch()
        self.network = network
        self.device = device
        self._consts: dict = {}
        from reliability.cim.graph import ops_analog, ops_elementwise, ops_pool

        self._impl = {ops_analog._AnalogDense: self._dense, ops_analog._AnalogConv: self._conv,
                      ops_elementwise._Unary: self._unary, ops_elementwise._Binary: self._binary,
                      ops_elementwise._Softmax: self._softmax, ops_elementwise._Flatten: self._flatten,
                      ops_pool._Pool: self._pool, ops_pool._GlobalAveragePool: self._global_pool}
        self.host_ops = sorted({op.op_type for op in network.ops if self._implementation(op) is None})

    def _implementation(self, op):
        """This op's torch version, or None when it runs on the host: an op type without one, a 1-D
        window (convolution, pooling), a dilated AveragePool."""
        impl = self._impl.get(type(op))
        win = getattr(op, "win", None)
        if win is not None and (win.nd != 2 or (op.op_type == "AveragePool" and win.d2 != (1, 1))):
            return None
        return impl

    def tensor(self, a, dtype):
        a = np.ascontiguousarray(a, dtype=dtype)
        if not a.flags.writeable:      # torch wants a writable buffer (constants are read-only views)
            a = a.copy()
        return self.torch.as_tensor(a, device=self.device)

    def forward(self, x, weights: list, dtype=np.float32) -> np.ndarray:
        """Logits ``(S, B, n_outputs)`` of the chips with stacked weights ``weights`` (one ``(S, K,
        N)`` or ``(K, N)`` array per analog layer) on inputs ``x`` (the same for every chip)."""
        net = self.network
        dtype = np.dtype(dtype)
        x = net._check_input(x)
        consts, _, _ = net._cached(dtype)
        ws, bs, S = net._prepare_weights(weights, dtype)
        self._dtype = dtype
        key = dtype.str
        if key not in self._consts:
            self._consts = {key: {n: self.tensor(v, dtype) for n, v in consts.items()}}
        env = dict(self._consts[key])
        env[net.input_name] = self.tensor(x, dtype)[None]
        self._w = [self.tensor(w, dtype) for w in ws]
        self._b = [None if b is None else self.tensor(b, dtype) for b in bs]
        with self.torch.inference_mode():
            for i, op in enumerate(net.ops):
                xs = [env[n] if n else None for n in op.inputs]
                impl = self._implementation(op)
                if impl is None:    # an op without a torch version here: numpy on the host
                    host = [None if a is None else a.cpu().numpy() for a in xs]
                    ys, _ = op.forward(host, _HostRuntime(ws, bs, x.shape[0], net._declared_batch))
                    ys = [self.tensor(a, dtype) if isinstance(a, np.ndarray) else a for a in ys]
                else:
                    ys = [impl(op, xs)]
                for n, v in zip(op.outputs, ys):
                    if n:
                        env[n] = v
                for n in net._free_after[i]:
                    env.pop(n, None)
            out = env[net._output_name]
            out = out.reshape(out.shape[0], out.shape[1], -1).expand(S, -1, -1)
            return out.to("cpu").numpy().astype(dtype, copy=False)

    # ---- ops ----
    def _dense(self, op, xs):
        x = xs[0]
        if op.swap_in:
            x = x.transpose(-1, -2)
        W, b = self._w[op.index], self._b[op.index]
        lead = x.shape[1:-1]
        X = x.reshape(x.shape[0], -1, W.shape[-2])
        Y = self.torch.matmul(X, W)
        if b is not None:
            Y = Y + b
        y = Y.reshape((Y.shape[0],) + tuple(lead) + (Y.shape[-1],))
        return y.transpose(-1, -2) if op.swap_out else y

    def _conv(self, op, xs):
        F = self.torch.nn.functional
        x = xs[0]                                   # (s, B, C, H, W)
        s, B, C, H, Wd = x.shape
        geo = op.win.geometry(H, Wd)
        (_, _), (pt, pl, pb, pr), (eh, ew) = geo
        kh, kw = op.win.k2
        G, cg = op.group, op.cg
        ws = [self._w[op.first + g] for g in range(G)]
        S = max([s] + [w.shape[0] for w in ws if w.ndim == 3])
        # the analog layer's (cg * kh * kw, og) matrix per chip -> a torch kernel (og, cg, kh, kw)
        ks = [(w if w.ndim == 3 else w[None]).expand(S, -1, -1) for w in ws]
        kern = self.torch.stack(ks, dim=1)              # (S, G, K, og)
        og = kern.shape[-1]
        kern = kern.permute(0, 1, 3, 2).reshape(S * G * og, cg, kh, kw)
        if s == 1 and S > 1:                        # one input for every chip: the chips are output channels
            inp, groups = x[0], G
            if G > 1:   # output channels must be grouped (g, chip, og) for the grouped conv
                kern = kern.reshape(S, G, og, cg, kh, kw).transpose(0, 1).reshape(G * S * og, cg, kh, kw)
        else:
            inp = x.expand(S, -1, -1, -1, -1).permute(1, 0, 2, 3, 4).reshape(B, S * C, H, Wd)
            groups = S * G
        if pt or pl or pb or pr or eh or ew:
            inp = F.pad(inp, (pl, pr + ew, pt, pb + eh))
        y = F.conv2d(inp, kern, stride=op.win.s2, dilation=op.win.d2, groups=groups)   # (B, ..., Ho, Wo)
        oh, ow = y.shape[-2:]
        if s == 1 and S > 1 and G > 1:
            y = y.reshape(B, G, S, og, oh, ow).transpose(1, 2).reshape(B, S, G * og, oh, ow)
        y = y.reshape(B, S, G * og, oh, ow).transpose(0, 1)
        bias = [self._b[op.first + g] for g in range(G)]
        if any(b is not None for b in bias):
            full = self.torch.cat([b if b is not None else self.torch.zeros(og, dtype=y.dtype, device=y.device)
                                   for b in bias])
            y = y + full.reshape(1, 1, -1, 1, 1)
        return y

    def _unary(self, op, xs):
        x, t = xs[0], op.op_type
        F = self.torch.nn.functional
        if t == "Relu":
            return self.torch.relu(x)
        if t == "LeakyRelu":
            return F.leaky_relu(x, op.alpha)
        if t == "Sigmoid":
            return self.torch.sigmoid(x)
        if t == "Tanh":
            return self.torch.tanh(x)
        return x

    def _binary(self, op, xs):
        from reliability.cim.graph.ops_elementwise import _align, arithmetic

        a, b = xs
        rank = max(a.ndim, b.ndim) - 1
        return arithmetic(op.op_type, _align(a, rank), _align(b, rank))

    def _softmax(self, op, xs):
        x = xs[0]
        v, ax = op._view(x)
        return self.torch.softmax(v, dim=ax).reshape(x.shape)

    def _flatten(self, op, xs):
        return op.forward(xs, None)[0][0]          # a reshape: the same on tensors

    def _pool(self, op, xs):
        F = self.torch.nn.functional
        x = xs[0]
        s, B, C, H, Wd = x.shape
        geo = op.win.geometry(H, Wd)
        (_, _), (pt, pl, pb, pr), (eh, ew) = geo
        pad = (pl, pr + ew, pt, pb + eh)
        x4 = x.reshape(s * B, C, H, Wd)
        if op.op_type == "MaxPool":
            y = F.max_pool2d(F.pad(x4, pad, value=-float("inf")), op.win.k2, op.win.s2, dilation=op.win.d2)
        else:
            cnt = self.tensor(op._counts(H, Wd, geo, self._dtype), self._dtype)
            k = op.win.k2[0] * op.win.k2[1]
            y = F.avg_pool2d(F.pad(x4, pad), op.win.k2, op.win.s2) * k / cnt
        return y.reshape((s, B) + tuple(y.shape[1:]))

    def _global_pool(self, op, xs):
        x = xs[0]
        return x.mean(dim=tuple(range(3, x.ndim)), keepdim=True)


class _HostRuntime:
    """The runtime a numpy op sees when the torch backend runs it on the host."""

    keep = False
    matmul = None
    consumable = frozenset()

    def __init__(self, weights, biases, batch, declared_batch):
        self.weights, self.biases = weights, biases
        self.batch, self.declared_batch = batch, declared_batch
