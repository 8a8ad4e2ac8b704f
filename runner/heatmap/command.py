"""`nbnets heatmap SOURCE`: the maps of a trained CNN for some test images, and (with --sanity) their checks.

A run writes `results/heatmap/<timestamp>-<id>/`:

    config.json     every option as resolved, the network and where it came from, the images, device
    heatmaps.npz    one row per (image, method): image_index, class (the class explained), method, map
                    (H, W) at the image size, float64; and per row true, predicted, probability
    heatmaps.png    each image and its overlays (figure.py), with the plot extra
    sanity.csv      with --sanity: the checks of sanity.py, one row per statistic

Every option is checked against the network and the data before the folder is made, so bad input writes
nothing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from numbanets.checkpoint import atomic_write_bytes
from numbanets.device import resolve
from runner.common.plots import PLOT_HINT, pyplot
from runner.common.runs import new_run_dir, write_config, write_csv
from runner.heatmap import figure, methods, sanity
from runner.heatmap.load import load
from runner.heatmap.network import Structure, forward, probabilities
from runner.heatmap.options import COMMAND, default_patch, default_stride, validate


@dataclass
class Result:
    run_dir: Path
    maps: dict = field(default_factory=dict)      # method -> (n, H, W)
    indices: list = field(default_factory=list)
    sanity_rows: list = field(default_factory=list)


def select_images(o: dict, y_test: np.ndarray, count: int | None = None) -> list[int]:
    """The test-set indices to explain: --index, or the first --images of the test split (of --class).
    With `count` (the sanity checks): the first `count` of the test split (of --class), whatever --index."""
    n = len(y_test)
    if o["index"] is not None and count is None:
        bad = [i for i in o["index"] if i >= n]
        if bad:
            raise ValueError(f"--index {bad[0]}: the test set has {n} images (indices 0..{n - 1})")
        return list(o["index"])
    pool = np.arange(n)
    if o["image_class"] is not None:
        pool = np.flatnonzero(y_test == o["image_class"])
        if not len(pool):
            raise ValueError(f"--class {o['image_class']}: no test image has that label "
                             f"(labels 0..{int(y_test.max(initial=0))})")
    return [int(i) for i in pool[:o["images"] if count is None else count]]


def _plan(o: dict, net: Structure, classes: int, shape) -> dict:
    """The methods, Grad-CAM's layer and occlusion's square, checked against the network; ValueError."""
    ending = net.gap_fc()
    wanted = o["methods"]
    notes = []
    if wanted is None:
        wanted = [m for m in ("cam", "gradcam", "occlusion") if m != "cam" or ending is not None]
        if ending is None:
            notes.append("cam left out: the network does not end in gap-fcK")
    elif "cam" in wanted and ending is None:
        raise ValueError(net.cam_refusal())
    if o["target"] is not None and o["target"] >= classes:
        raise ValueError(f"--target {o['target']}: the network has {classes} classes (0..{classes - 1})")
    if o["image_class"] is not None and o["image_class"] >= classes:
        raise ValueError(f"--class {o['image_class']}: the network has {classes} classes (0..{classes - 1})")
    layer = child = None
    if "gradcam" in wanted or o["sanity"] or o["layer"] is not None:
        layer, child = net.conv_child(o["layer"])  # refuses a --layer that is not a conv
    _, h, w = shape
    patch = o["patch"] if o["patch"] is not None else default_patch(h, w)
    if patch > min(h, w):
        raise ValueError(f"--patch {patch} is larger than the {h}x{w} images")
    stride = o["stride"] if o["stride"] is not None else default_stride(patch)
    if stride > patch and "occlusion" in wanted:
        raise ValueError(f"--stride {stride} is larger than --patch {patch}: some pixels would never be occluded")
    return {"methods": wanted, "layer": layer, "child": child, "patch": patch, "stride": stride, "notes": notes,
            "ending": ending}


def compute(model, method: str, x, targets, plan: dict, fill, height: int, width: int) -> np.ndarray:
    """One method's maps (n, H, W) at the image size."""
    if method == "cam":
        low = methods.cam(model, x, targets)
    elif method == "gradcam":
        low = methods.gradcam_at(model, x, targets, plan["child"])
    else:
        return methods.occlusion(model, x, targets, plan["patch"], plan["stride"], fill)
    return methods.upsample(low, height, width)


def _write_npz(path: Path, indices, targets, true, predicted, probability, maps: dict) -> None:
    rows = [(i, method) for method in maps for i in range(len(indices))]
    buffer = io.BytesIO()
    np.savez(buffer,
             image_index=np.array([indices[i] for i, _ in rows], dtype=np.int64),
             **{"class": np.array([targets[i] for i, _ in rows], dtype=np.int64)},
             method=np.array([m for _, m in rows]),
             map=np.stack([maps[m][i] for i, m in rows]) if rows else np.zeros((0, 0, 0)),
             true=np.array([true[i] for i, _ in rows], dtype=np.int64),
             predicted=np.array([predicted[i] for i, _ in rows], dtype=np.int64),
             probability=np.array([probability[i] for i, _ in rows], dtype=np.float64))
    atomic_write_bytes(path, buffer.getvalue())


def run(opts: dict, given=(), echo=None) -> Result:
    """Run `nbnets heatmap` with `opts` (option name -> value, SOURCE as "source")."""
    echo = echo or (lambda s: print(s, flush=True))
    o = validate(opts, given)
    loaded = load(opts["source"], o["data"])
    d, model = loaded.data, loaded.model
    net = Structure(model)
    plan = _plan(o, net, loaded.classes, loaded.input_shape)
    indices = select_images(o, d.y_test)
    device = resolve(o["device"])
    if device != "cpu":
        model.to(device)

    x = d.x_test[indices]
    true = d.y_test[indices]
    probs = probabilities(forward(model, methods.place(model, x))[0])
    predicted = probs.argmax(axis=1)
    targets = np.full(len(indices), o["target"]) if o["target"] is not None else predicted
    fill = d.x_train.mean(axis=0)  # the mean training image, in the network's input scale
    _, h, w = loaded.input_shape

    run_dir = new_run_dir(o["out"], COMMAND)
    resolved = {**o, "source": str(opts["source"]), "methods": plan["methods"], "layer": plan["layer"],
                "patch": plan["patch"], "stride": plan["stride"]}
    write_config(run_dir, COMMAND, resolved, device=device, network={
        "arch": loaded.spec, "input_shape": list(loaded.input_shape), "classes": loaded.classes,
        "parameters": model.num_parameters(), "source": loaded.source,
        "gradcam_layer": None if plan["layer"] is None else net.token(plan["layer"])},
        data=d.describe(), images=indices)

    echo(f"network {loaded.spec}: {model.num_parameters():,} parameters, {loaded.classes} classes "
         f"({loaded.source['kind']} {loaded.source['path']}, epoch {loaded.source.get('epoch')})")
    echo(f"images  {len(indices)} test images of {d.name}: {', '.join(map(str, indices))}")
    parts = []
    for m in plan["methods"]:
        if m == "gradcam":
            parts.append(f"gradcam at layer {plan['layer']} ({net.token(plan['layer'])})")
        elif m == "occlusion":
            parts.append(f"occlusion {plan['patch']}x{plan['patch']} squares, stride {plan['stride']}")
        else:
            parts.append(f"cam (layer {plan['ending'].gap - 1} maps, fc layer {plan['ending'].fc} weights)")
    echo(f"methods {'; '.join(parts)}")
    for note in plan["notes"]:
        echo(f"note    {note}")
    echo(f"run     {run_dir}")

    maps = {m: compute(model, m, x, targets, plan, fill, h, w) for m in plan["methods"]}
    _write_npz(run_dir / "heatmaps.npz", indices, targets, true, predicted, probs.max(axis=1), maps)
    for k, i in enumerate(indices):
        extra = f", explains {int(targets[k])}" if int(targets[k]) != int(predicted[k]) else ""
        echo(f"test image {i:>4}: true {int(true[k])}, predicted {int(predicted[k])} ({probs[k].max():.1%}){extra}")

    result = Result(run_dir, maps, indices)
    if o["sanity"]:
        result.sanity_rows = _sanity(o, loaded, model, plan, fill)
        write_csv(run_dir / "sanity.csv", sanity.frame(result.sanity_rows))
        for line in sanity.verdicts(result.sanity_rows):
            echo(line)

    written = ["config.json", "heatmaps.npz"]
    if o["plot"]:
        plt = pyplot()
        if plt is None:
            echo(f"heatmaps.png not written: matplotlib is not installed (get it with {PLOT_HINT})")
        else:
            wanted = "predicted class" if o["target"] is None else f"class {o['target']}"
            title = f"{loaded.spec}: where the network looks for the {wanted}"
            figure.draw(plt, run_dir / "heatmaps.png", x, indices, true, predicted, probs.max(axis=1), targets,
                        maps, title)
            written.append("heatmaps.png")
    if o["sanity"]:
        written.append("sanity.csv")
    echo(f"wrote   {', '.join(written)} in {run_dir}")
    return result


def _sanity(o, loaded, model, plan, fill) -> list[dict]:
    """The checks on the --sanity-images test images (the first N of the test split, of --class)."""
    _, h, w = loaded.input_shape
    indices = select_images(o, loaded.data.y_test, o["sanity_images"])
    x = loaded.data.x_test[indices]
    predicted = probabilities(forward(model, methods.place(model, x))[0]).argmax(axis=1)
    targets = np.full(len(indices), o["target"]) if o["target"] is not None else predicted

    def again(m, method):
        return compute(m, method, x, targets, plan, fill, h, w)

    maps = {m: again(model, m) for m in plan["methods"]}
    rows = sanity.randomisation(model, loaded.spec, loaded.input_shape, again, maps, seed=o["seed"])
    if "gradcam" in maps and "occlusion" in maps:
        rows.extend(sanity.agreement(maps["gradcam"], maps["occlusion"]))
    if plan["ending"] is not None:
        cam_raw = methods.cam(model, x, targets, rectify=False)
        gc_raw = methods.gradcam_at(model, x, targets, plan["ending"].maps_child, rectify=False)
        rows.extend(sanity.identity(cam_raw, gc_raw))
    return rows
