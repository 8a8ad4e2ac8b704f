"""Sanity checks for saliency maps (Adebayo et al. 2018, "Sanity Checks for Saliency Maps"), as sanity.csv.

model_randomisation
    Cascading randomisation: re-initialise the weights of the layers with parameters one at a time from
    the top (the output layer) down, with the initialiser training starts from, and compute the maps
    again for the same images and classes. The new weights come from default_rng([seed, 2018]), a stream
    apart from train-cnn's default_rng(seed): with the run's own seed they would be its initial weights,
    which the trained ones still resemble (a trained network's fc moves little from its start). A map that explains the trained network must change: its
    Spearman rank correlation with the trained map falls towards 0. Each step is a row (the mean over the
    images); the method passes when, with every layer re-initialised, the mean correlation is below
    RANDOMISATION_MAX. A method whose map stays (an edge detector of the input, say) fails.
agreement
    Grad-CAM and occlusion measure different things (a gradient at a conv layer, a probability drop in the
    input) but should point at the same strokes: the mean Spearman correlation of the two maps of each
    image; it passes when positive. A second row, without a verdict, pairs each image's Grad-CAM with the
    next image's occlusion map: what the two share by layout alone (both favour the middle of the frame).
cam_equals_gradcam
    For a gap-fc network, Grad-CAM at the maps the gap averages is CAM / (H*W) exactly (methods.py). The
    raw (unrectified) maps are compared after the least-squares scale: the largest deviation relative to
    the map's largest value, which passes below IDENTITY_TOLERANCE with a positive scale.

A map that is constant (every value equal, e.g. a Grad-CAM whose ReLU cut everything) has no ranks: its
correlations are counted as 0 (no agreement) and the row's `constant_maps` says how many there were.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from numbanets.nn import arch
from runner.heatmap.network import Structure

RANDOMISATION_MAX = 0.5      # mean rank correlation with the trained map, every layer re-initialised
AGREEMENT_MIN = 0.0          # mean rank correlation of Grad-CAM and occlusion
IDENTITY_TOLERANCE = 1e-4    # CAM vs scaled Grad-CAM, relative to the map's largest absolute value (float32)

COLUMNS = ["check", "method", "randomised", "images", "statistic", "value", "threshold", "passed", "constant_maps"]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps (ties get their mean rank); nan when either is constant."""
    a, b = np.ravel(a), np.ravel(b)
    if np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / math.sqrt((ra * ra).sum() * (rb * rb).sum()))


def mean_spearman(maps_a: np.ndarray, maps_b: np.ndarray) -> tuple[float, int]:
    """(mean over images of the rank correlation, constant maps counted as 0; how many pairs had one)."""
    values = [spearman(a, b) for a, b in zip(maps_a, maps_b)]
    constant = sum(math.isnan(v) for v in values)
    return float(np.mean([0.0 if math.isnan(v) else v for v in values])), constant


def _row(check, method, randomised, images, statistic, value, threshold=None, passed=None, constant=0) -> dict:
    return {"check": check, "method": method, "randomised": randomised, "images": images, "statistic": statistic,
            "value": value, "threshold": threshold, "passed": passed, "constant_maps": constant}


def randomisation_rng(seed: int) -> np.random.Generator:
    """The generator of the re-initialised weights: never the one train-cnn draws a run's initial weights from."""
    return np.random.default_rng([seed, 2018])


def randomisation(model, spec: str, input_shape, compute, trained: dict, seed: int = 0) -> list[dict]:
    """The cascading randomisation rows of every method in `trained` ({method: maps (N, H, W)}).

    compute(model, method) gives a method's maps for the fixed images and classes. The model's weights are
    put back as they were at the end.
    """
    net = Structure(model)
    fresh = arch.build(arch.parse(spec), tuple(input_shape), randomisation_rng(seed),
                       np.dtype(next(iter(model.state_dict().values())).dtype)).state_dict()
    saved = model.state_dict()
    state = dict(saved)
    rows, done = [], []
    layers = net.parameter_layers()
    try:
        for step, index in enumerate(layers, start=1):
            for name in net.parameter_names(index):
                state[name] = fresh[name]
            model.load_state_dict(state)
            done.append(net.token(index))
            last = step == len(layers)
            for method, before in trained.items():
                after = compute(model, method)
                value, constant = mean_spearman(before, after)
                rows.append(_row("model_randomisation", method, " ".join(done), len(before), "mean_spearman",
                                 value, RANDOMISATION_MAX if last else None,
                                 bool(value < RANDOMISATION_MAX) if last else None, constant))
    finally:
        model.load_state_dict(saved)
    return rows


def agreement(gradcam_maps: np.ndarray, occlusion_maps: np.ndarray) -> dict:
    """The rows of the Grad-CAM / occlusion agreement: the same image's maps (with the verdict), and each
    image's Grad-CAM against the next image's occlusion map (the layout baseline, with two images or more)."""
    value, constant = mean_spearman(gradcam_maps, occlusion_maps)
    rows = [_row("agreement", "gradcam~occlusion", "", len(gradcam_maps), "mean_spearman", value, AGREEMENT_MIN,
                 bool(value > AGREEMENT_MIN), constant)]
    if len(gradcam_maps) > 1:
        value, constant = mean_spearman(gradcam_maps, np.roll(occlusion_maps, -1, axis=0))
        rows.append(_row("agreement", "gradcam~occlusion", "", len(gradcam_maps), "mean_spearman_other_image",
                         value, constant=constant))
    return rows


def identity(cam_raw: np.ndarray, gradcam_raw: np.ndarray) -> list[dict]:
    """The rows of CAM = s * Grad-CAM (raw maps at the gap's input): the largest relative deviation, and
    the scale (H*W in theory)."""
    errors, scales = [], []
    for c, g in zip(cam_raw, gradcam_raw):
        c, g = np.ravel(c).astype(np.float64), np.ravel(g).astype(np.float64)
        gg = float(g @ g)
        s = float(c @ g) / gg if gg > 0 else 0.0
        scales.append(s)
        errors.append(float(np.abs(c - s * g).max() / (np.abs(c).max() or 1.0)))
    worst = max(errors)
    passed = bool(worst < IDENTITY_TOLERANCE and min(scales) > 0)
    return [_row("cam_equals_gradcam", "cam~gradcam", "", len(errors), "max_relative_error", worst,
                 IDENTITY_TOLERANCE, passed),
            _row("cam_equals_gradcam", "cam~gradcam", "", len(errors), "scale_median", float(np.median(scales)))]


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def verdicts(rows: list[dict]) -> list[str]:
    """One line per check that has a verdict, saying what passed and what failed."""
    lines = []
    for r in rows:
        if r["passed"] is None:
            continue
        if r["check"] == "model_randomisation":
            if r["passed"]:
                lines.append(f"model randomisation: {r['method']} passes: with every layer re-initialised its maps "
                             f"keep a mean rank correlation of {r['value']:.3f} with the trained ones (< "
                             f"{r['threshold']:g})")
            else:
                lines.append(f"model randomisation: {r['method']} FAILS: its maps do not follow the weights; with "
                             f"every layer re-initialised they keep a mean rank correlation of {r['value']:.3f} with "
                             f"the trained ones (needs < {r['threshold']:g})")
        elif r["check"] == "agreement":
            word = "passes" if r["passed"] else "FAILS"
            other = [o["value"] for o in rows if o["statistic"] == "mean_spearman_other_image"]
            versus = f"; {other[0]:.3f} against the next image's occlusion map" if other else ""
            lines.append(f"agreement: Grad-CAM and occlusion {word}: mean rank correlation {r['value']:.3f} over "
                         f"{r['images']} images (needs > {r['threshold']:g}){versus}")
        elif r["check"] == "cam_equals_gradcam":
            word = "passes" if r["passed"] else "FAILS"
            lines.append(f"CAM = Grad-CAM up to a positive scale {word}: largest relative deviation "
                         f"{r['value']:.2e} (needs < {r['threshold']:g})")
    return lines
