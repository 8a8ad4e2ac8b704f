"""The three maps of where a network looks, for a batch of images and one target class per image.

cam (Zhou et al. 2016, "Learning Deep Features for Discriminative Localization")
    For a network ending in gap-fcK the class score is y_c = sum_k w_ck * mean_ij A_k(i, j) + b_c, with A
    the maps the gap averages. The class activation map is M_c(i, j) = sum_k w_ck A_k(i, j): how much each
    position adds to y_c (the mean of M_c is y_c - b_c).

gradcam (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization")
    For any network and a conv layer with maps A (the block's rectified output): alpha_k = the mean over
    (i, j) of dy_c / dA_k(i, j), the gradient coming from the layers' own backward passes; the map is
    ReLU(sum_k alpha_k A_k). At the maps a gap averages, dy_c / dA_k(i, j) = w_ck / (H*W) at every
    position, so Grad-CAM there is CAM / (H*W): the identity sanity.py checks.

occlusion (Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks")
    Model-agnostic: slide a `patch` x `patch` square over the image with step `stride` (the last position
    touches the far edge), replace the pixels under it by the mean training image there, and record the
    drop of the target's softmax probability, p(original) - p(occluded). A pixel's value is the mean drop
    over the squares that cover it. Every occluded copy goes through the forward kernels in batches.

Both CAMs are rectified by default, the positive evidence for the class, as Grad-CAM defines it (pass
rectify=False for the raw linear combination); occlusion keeps its sign (a negative drop: hiding those
pixels makes the class more likely). cam and gradcam come at the conv maps' resolution and are brought
to the image size by `upsample` (bilinear); occlusion is at the image size already.
"""

from __future__ import annotations

import numpy as np

from numbanets.device import to_device, to_host
from runner.heatmap.network import Structure, backward_to, forward, probabilities

OCCLUSION_BATCH = 500  # occluded images per forward pass (train-cnn's evaluation batch)


def place(model, a):
    """A host array moved to where the model runs (a CUDA device array for a model on the GPU)."""
    return to_device(a) if model.device == "cuda" else a


def _combine(weights: np.ndarray, maps: np.ndarray, rectify: bool) -> np.ndarray:
    """sum_k weights[n, k] * maps[n, k] for every image n -> (N, H, W), float64, ReLU'd when rectify."""
    m = np.einsum("nk,nkhw->nhw", weights.astype(np.float64), maps.astype(np.float64))
    return np.maximum(m, 0.0) if rectify else m


def cam(model, x, targets, rectify: bool = True) -> np.ndarray:
    """Class activation maps (N, h, w) of x (N, C, H, W) for targets (N,), at the gap's input resolution.
    ValueError when the network does not end in gap-fc."""
    net = Structure(model)
    ending = net.gap_fc()
    if ending is None:
        raise ValueError(net.cam_refusal())
    _, kept = forward(model, place(model, x), keep={ending.maps_child})
    maps = to_host(kept[ending.maps_child])
    w = to_host(net.pairs[ending.fc - 1][1].params["w"])  # (K, C)
    return _combine(w[np.asarray(targets)], maps, rectify)


def gradcam_at(model, x, targets, child: int, rectify: bool = True) -> np.ndarray:
    """Grad-CAM (N, h, w) at the output of the model's child `child` (a (N, C, h, w) output)."""
    logits, kept = forward(model, place(model, x), keep={child})
    maps = to_host(kept[child])
    if maps.ndim != 4:
        raise ValueError(f"Grad-CAM needs the (C, H, W) maps of a conv layer; child {child} outputs {maps.shape[1:]}")
    k = to_host(logits).shape[1]
    onehot = np.zeros((len(targets), k), dtype=maps.dtype)
    onehot[np.arange(len(targets)), np.asarray(targets)] = 1  # d(sum_n y_{n, t_n}) / d logits
    grads = to_host(backward_to(model, place(model, onehot), child))
    alpha = grads.astype(np.float64).mean(axis=(2, 3))  # (N, C): the mean gradient per map
    return _combine(alpha, maps, rectify)


def gradcam(model, x, targets, layer: int | None = None, rectify: bool = True) -> np.ndarray:
    """Grad-CAM (N, h, w) at conv layer `layer` (spec index from 1; None: the last conv layer)."""
    _, child = Structure(model).conv_child(layer)
    return gradcam_at(model, x, targets, child, rectify)


def positions(size: int, patch: int, stride: int) -> list[int]:
    """The starts of the squares along one side: 0, stride, ... and the last one flush with the far edge."""
    if patch > size:
        raise ValueError(f"--patch {patch} is larger than the image side {size}")
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def occlusion(model, x, targets, patch: int, stride: int, fill: np.ndarray,
              batch: int = OCCLUSION_BATCH) -> np.ndarray:
    """Occlusion maps (N, H, W), float64: the mean drop of the target's probability over the squares that
    cover each pixel. fill (C, H, W) is what an occluded pixel becomes (the mean training image)."""
    x = np.asarray(x)
    n, _, h, w = x.shape
    targets = np.asarray(targets)
    if patch > min(h, w):
        raise ValueError(f"--patch {patch} is larger than the {h}x{w} images")
    if stride > patch:
        raise ValueError(f"--stride {stride} is larger than --patch {patch}: some pixels would never be occluded")
    squares = [(i, j) for i in positions(h, patch, stride) for j in positions(w, patch, stride)]
    base = probabilities(forward(model, place(model, x))[0])[np.arange(n), targets]
    drops = np.empty((n, len(squares)))
    fill = np.asarray(fill, dtype=x.dtype)
    jobs = [(img, s) for img in range(n) for s in range(len(squares))]
    for start in range(0, len(jobs), batch):
        chunk = jobs[start:start + batch]
        xb = x[[img for img, _ in chunk]].copy()
        for row, (_, s) in enumerate(chunk):
            i, j = squares[s]
            xb[row, :, i:i + patch, j:j + patch] = fill[:, i:i + patch, j:j + patch]
        p = probabilities(forward(model, place(model, xb))[0])
        for row, (img, s) in enumerate(chunk):
            drops[img, s] = base[img] - p[row, targets[img]]
    total = np.zeros((n, h, w))
    count = np.zeros((h, w))
    for s, (i, j) in enumerate(squares):
        total[:, i:i + patch, j:j + patch] += drops[:, s, None, None]
        count[i:i + patch, j:j + patch] += 1
    return total / count


def _bilinear_matrix(out_size: int, in_size: int) -> np.ndarray:
    """(out_size, in_size) weights of 1-D bilinear resampling with half-pixel centres (align_corners=False,
    as torch.nn.functional.interpolate and OpenCV's resize): out[o] samples in at (o + 0.5) * in/out - 0.5,
    clamped to the edge pixels."""
    m = np.zeros((out_size, in_size))
    for o in range(out_size):
        src = min(max((o + 0.5) * in_size / out_size - 0.5, 0.0), in_size - 1)
        lo = int(np.floor(src))
        hi = min(lo + 1, in_size - 1)
        frac = src - lo
        m[o, lo] += 1.0 - frac
        m[o, hi] += frac
    return m


def upsample(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resampling of maps (N, h, w) to (N, height, width); linear, so a positive scale between
    two maps survives it. Maps already at that size come back unchanged."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.shape[1:] == (height, width):
        return maps.copy()
    rows = _bilinear_matrix(height, maps.shape[1])
    cols = _bilinear_matrix(width, maps.shape[2])
    return np.einsum("Hh,nhw,Ww->nHW", rows, maps, cols)
