"""The structure the maps need, read off a network built by numbanets.nn.arch.build, and the two passes.

Layers are numbered as the spec (and `nbnets shapes`) numbers them, from 1. A conv layer's *block* is
the conv and the activations (and dropouts) right after it; Grad-CAM at conv layer N takes the block's
output, the rectified maps (Selvaraju et al. use the last conv layer's maps after its ReLU). CAM needs a
network that ends in `gap-fcK` (a dropout between them is allowed: it is the identity when evaluating):
its maps are the input of the gap, weighted by the fc's weights of the class.

    forward(model, x, keep)        logits and the outputs of the children in `keep` (eval mode)
    backward_to(model, dlogits, p) the gradient of sum(logits * dlogits) with respect to child p's output,
                                   through the layers' own backward passes
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from numbanets.device import to_host


@dataclass(frozen=True)
class GapFc:
    gap: int        # spec index (1-based) of the gap layer
    fc: int         # spec index of the final fc layer
    maps_child: int  # position in the model's children of the module whose output the gap averages


class Structure:
    """Spec layers, children positions, conv blocks and the gap-fc ending of a network."""

    def __init__(self, model):
        self.model = model
        self.pairs = list(model.arch_layers)  # (LayerSpec, module), one per spec layer
        self.children = list(model)
        position = {id(child): i for i, child in enumerate(self.children)}
        self.child_of = [position[id(module)] for _, module in self.pairs]  # spec index - 1 -> child position

    def token(self, index: int) -> str:
        return self.pairs[index - 1][0].token

    def conv_layers(self) -> list[int]:
        """The spec indices of the conv layers, in order."""
        return [i + 1 for i, (layer, _) in enumerate(self.pairs) if layer.kind == "conv"]

    def block_end(self, index: int) -> int:
        """The spec index of the last layer of the block that starts at conv layer `index`."""
        end = index
        while end < len(self.pairs) and self.pairs[end][0].kind in ("act", "dropout"):
            end += 1
        return end

    def conv_child(self, layer: int | None) -> tuple[int, int]:
        """(conv layer, child position of its block's output) for --layer (None: the last conv);
        ValueError when the network has no conv layer or `layer` is not one."""
        convs = self.conv_layers()
        if not convs:
            raise ValueError("gradcam needs a conv layer, and this network has none")
        if layer is None:
            layer = convs[-1]
        elif not 1 <= layer <= len(self.pairs):
            raise ValueError(f"--layer {layer}: the network has layers 1..{len(self.pairs)}; its conv layers are "
                             f"{', '.join(map(str, convs))}")
        elif layer not in convs:
            raise ValueError(f"--layer {layer} is {self.token(layer)!r}, not a conv layer; the conv layers of this "
                             f"network are {', '.join(map(str, convs))}")
        return layer, self.child_of[self.block_end(layer) - 1]

    def gap_fc(self) -> GapFc | None:
        """The gap-fc ending CAM needs, or None when the network does not end that way."""
        kinds = [layer.kind for layer, _ in self.pairs]
        if not kinds or kinds[-1] != "fc":
            return None
        g = len(kinds) - 2
        while g >= 0 and kinds[g] == "dropout":
            g -= 1
        if g < 1 or kinds[g] != "gap":
            return None
        return GapFc(g + 1, len(kinds), self.child_of[g] - 1)

    def cam_refusal(self) -> str:
        """Why CAM does not apply to this network (one line)."""
        return (f"cam needs a network that ends in gap-fcK (a global average pooling of the last conv maps, then "
                f"the classifier), e.g. ...-conv256x3x3:p=same-relu-gap-fc10 (docs/commands/heatmap.md); this one "
                f"ends in {'-'.join(layer.token for layer, _ in self.pairs[-3:])} (use --method gradcam,occlusion)")

    def parameter_layers(self) -> list[int]:
        """Spec indices of the layers with weights (conv, fc), from the top (the output) down."""
        return [i + 1 for i, (_, module) in reversed(list(enumerate(self.pairs))) if module.params]

    def parameter_names(self, index: int) -> list[str]:
        """The state_dict names of spec layer `index`'s parameters."""
        child = self.child_of[index - 1]
        return [f"{child}.{name}" for name in self.pairs[index - 1][1].params]


def forward(model, x, keep=()) -> tuple[object, dict]:
    """(logits, {child position: output}) of x in eval mode; outputs stay where the model runs."""
    model.eval()
    kept = {}
    h = x
    for i, child in enumerate(model):
        h = child.forward(h)
        if i in keep:
            kept[i] = h
    return h, kept


def backward_to(model, dlogits, position: int):
    """The gradient with respect to child `position`'s output of sum(logits * dlogits), after a forward:
    the backward passes of the children above it, in reverse. The parameter gradients this accumulates
    are zeroed again."""
    children = list(model)
    g = dlogits
    for child in reversed(children[position + 1:]):
        g = child.backward(g)
    model.zero_grad()
    return g


def probabilities(logits) -> np.ndarray:
    """Softmax of host or device logits, on the host, float64."""
    z = to_host(logits).astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
