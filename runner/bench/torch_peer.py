"""The PyTorch peers of `nbnets bench`: the same ops and models in torch, on the CPU or CUDA.

torch is an optional peer, never a dependency: only `load()` imports it (and
says why it is skipped); everything else takes the module as an argument.
The models are numbanets' model definitions: numbanets' weights are copied in
(numbanets' parameter names map to torch's), one-hot input for the char LMs,
and a recurrent layer's single bias b is torch's bias_ih with bias_hh fixed at
zero (requires_grad False), so both compute the same numbers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["load", "tensors", "host", "conv2d_backward", "max_pool2x2_backward", "Recurrent", "CharLM", "CNN"]


def load(disabled: bool, device: str):
    """(torch or None, a note saying which torch or why none)."""
    if disabled:
        return None, "skipped (--no-torch)"
    try:
        import torch  # optional peer: imported only here, and only when it is wanted
    except Exception as exc:  # an optional peer: any import failure means "not here"
        return None, f"not installed ({exc.__class__.__name__}); the torch rows are skipped"
    if device == "cuda":
        if not torch.cuda.is_available():
            return None, f"torch {torch.__version__} has no CUDA here; the torch rows are skipped"
        torch.backends.cuda.matmul.allow_tf32 = False  # full float32, as numbanets
        torch.backends.cudnn.allow_tf32 = False
        return torch, f"torch {torch.__version__}, CUDA {torch.version.cuda}, TF32 off"
    return torch, f"torch {torch.__version__}"


def tensors(torch, arrays: dict, device: str) -> dict:
    """torch copies of host arrays on `device` (other values pass through)."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) if isinstance(v, np.ndarray) else v
            for k, v in arrays.items()}


def host(t):
    """A numpy array (or float) of a tensor on any device."""
    if hasattr(t, "detach"):
        t = t.detach().cpu()
        return float(t) if t.ndim == 0 else t.numpy()
    return t


def conv2d_backward(torch, dy, x, w, pad):
    """(dx, dw, db) of conv2d with stride 1: the op autograd calls."""
    return torch.ops.aten.convolution_backward(dy, x, w, [w.shape[0]], [1, 1], [pad, pad], [1, 1], False,
                                               [0, 0], 1, [True, True, True])


def max_pool2x2_backward(torch, dy, x, idx):
    return torch.ops.aten.max_pool2d_with_indices_backward(dy, x, [2, 2], [2, 2], [0, 0], [1, 1], False, idx)


def _copy_recurrent(torch, mod, k, w_ih, w_hh, b, b_hh=None):
    """Layer k of a torch RNN/LSTM/GRU gets numbanets' weights; bias_hh is fixed at zero unless given (the GRU's
    two biases do not sum into one)."""
    with torch.no_grad():
        getattr(mod, f"weight_ih_l{k}").copy_(w_ih)
        getattr(mod, f"weight_hh_l{k}").copy_(w_hh)
        getattr(mod, f"bias_ih_l{k}").copy_(b)
        if b_hh is None:
            getattr(mod, f"bias_hh_l{k}").zero_()
        else:
            getattr(mod, f"bias_hh_l{k}").copy_(b_hh)
    getattr(mod, f"bias_hh_l{k}").requires_grad_(b_hh is not None)


def _torch_cell(torch, cell, d, h, layers=1, activation="tanh"):
    if cell == "lstm":
        return torch.nn.LSTM(d, h, layers)
    if cell == "gru":
        return torch.nn.GRU(d, h, layers)
    return torch.nn.RNN(d, h, layers, nonlinearity=activation)


class Recurrent:
    """One torch.nn.LSTM / GRU / RNN layer on tensors t (x, h0, [c0], w_ih, w_hh, b, [b_hh], dhs): forward +
    backward."""

    def __init__(self, torch, cell, t: dict, activation="tanh"):
        self.torch, self.cell, self.dhs = torch, cell, t["dhs"]
        d, h = t["x"].shape[2], t["w_hh"].shape[1]
        mod = _torch_cell(torch, cell, d, h, activation=activation).to(t["x"].device)
        _copy_recurrent(torch, mod, 0, t["w_ih"], t["w_hh"], t["b"], t.get("b_hh"))
        self.mod = mod
        self.inputs = [t["x"].clone().requires_grad_(True), t["h0"][None].clone().requires_grad_(True)]
        if cell == "lstm":
            self.inputs.append(t["c0"][None].clone().requires_grad_(True))

    def run(self):
        """(hs, gradients of x, h0, [c0], w_ih, w_hh, b) for dL/dhs = dhs."""
        x, *state = self.inputs
        out, _ = self.mod(x, tuple(state) if self.cell == "lstm" else state[0])
        wrt = self.inputs + [self.mod.weight_ih_l0, self.mod.weight_hh_l0, self.mod.bias_ih_l0]
        if self.cell == "gru":
            wrt.append(self.mod.bias_hh_l0)
        return out, self.torch.autograd.grad(out, wrt, self.dhs)

    def outputs(self, result) -> dict:
        out, grads = result
        biases = ["db_ih", "db_hh"] if self.cell == "gru" else ["db"]
        names = ["dx", "dh0", "dc0"][:len(self.inputs)] + ["dw_ih", "dw_hh"] + biases
        got = {"hs": host(out)}
        for name, g in zip(names, grads):
            got[name] = host(g[0] if name in ("dh0", "dc0") else g)
        return got


def _optimizer(torch, params, kind, lr, momentum=0.0, alpha=0.95, eps=1e-8, betas=(0.9, 0.999)):
    """torch.optim with numbanets' hyper-parameters (numbanets.optim matches these rules)."""
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    if kind == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=eps)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps)
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)


class _Model:
    """A torch model whose parameters are named as numbanets' (self.named); one training step."""

    def __init__(self, torch, device, optimizer: dict, clip: float):
        self.torch, self.device, self.clip = torch, device, clip
        self.params = [p for p in self.named.values()]
        self.opt = _optimizer(torch, self.params, **optimizer)

    def step(self, x, y):
        """zero_grad, forward, cross-entropy, backward, clip_grad_norm_, optimizer step; returns the loss tensor."""
        torch = self.torch
        self.opt.zero_grad(set_to_none=True)
        targets = torch.from_numpy(np.ascontiguousarray(y).reshape(-1)).to(self.device)
        loss = torch.nn.functional.cross_entropy(self.logits(torch.from_numpy(x).to(self.device)), targets)
        loss.backward()
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.opt.step()
        return loss

    def outputs(self, loss) -> dict:
        got = {"loss": host(loss)}
        for name, p in self.named.items():
            got[f"grad.{name}"] = host(p.grad)
            got[f"param.{name}"] = host(p)
        return got


class CharLM(_Model):
    """torch.nn.LSTM / GRU / RNN (one-hot input) + torch.nn.Linear with a numbanets CharLM's weights."""

    def __init__(self, torch, device, state, optimizer, clip, cell, layers, vocab, activation="tanh"):
        hidden = state["rnn.l0.w_hh"].shape[1]
        rnn = _torch_cell(torch, cell, vocab, hidden, layers, activation)
        self.rnn, self.head = rnn.to(device), torch.nn.Linear(hidden, vocab).to(device)
        self.vocab, self.hidden = vocab, hidden
        self.named = {}
        biases = ("b_ih", "b_hh") if cell == "gru" else ("b",)
        for k in range(layers):
            weights = [torch.from_numpy(state[f"rnn.l{k}.{s}"]) for s in ("w_ih", "w_hh", *biases)]
            _copy_recurrent(torch, self.rnn, k, *weights)
            self.named.update({f"rnn.l{k}.w_ih": getattr(self.rnn, f"weight_ih_l{k}"),
                               f"rnn.l{k}.w_hh": getattr(self.rnn, f"weight_hh_l{k}"),
                               f"rnn.l{k}.{biases[0]}": getattr(self.rnn, f"bias_ih_l{k}")})
            if cell == "gru":
                self.named[f"rnn.l{k}.b_hh"] = getattr(self.rnn, f"bias_hh_l{k}")
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(state["head.w"]))
            self.head.bias.copy_(torch.from_numpy(state["head.b"]))
        self.named.update({"head.w": self.head.weight, "head.b": self.head.bias})
        super().__init__(torch, device, optimizer, clip)

    def logits(self, ids):
        x = self.torch.nn.functional.one_hot(ids, self.vocab).to(self.head.weight.dtype)
        out, _ = self.rnn(x)
        return self.head(out.reshape(-1, self.hidden))


class CNN(_Model):
    """torch.nn.Sequential of the layer descriptions of runner.bench.cases.cnn_layers."""

    def __init__(self, torch, device, state, optimizer, clip, layers):
        nn = torch.nn
        modules, self.named = [], {}
        for layer in layers:
            kind = layer[0]
            if kind == "conv":
                name, stride, ((pt, pb), (pl, pr)) = layer[1:]
                if pt != pb or pl != pr:
                    raise ValueError("the torch CNN peer takes symmetric padding only")
                w = state[f"{name}.w"]
                mod = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:], stride=stride, padding=(pt, pl))
            elif kind == "fc":
                w = state[f"{layer[1]}.w"]
                mod = nn.Linear(w.shape[1], w.shape[0])
            else:
                mod = {"relu": nn.ReLU, "pool2": lambda: nn.MaxPool2d(2), "flatten": nn.Flatten}[kind]()
            if kind in ("conv", "fc"):
                with torch.no_grad():
                    mod.weight.copy_(torch.from_numpy(state[f"{layer[1]}.w"]))
                    mod.bias.copy_(torch.from_numpy(state[f"{layer[1]}.b"]))
                self.named.update({f"{layer[1]}.w": mod.weight, f"{layer[1]}.b": mod.bias})
            modules.append(mod)
        self.net = nn.Sequential(*modules).to(device)
        super().__init__(torch, device, optimizer, clip)

    def logits(self, x):
        return self.net(x)
