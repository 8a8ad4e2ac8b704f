"""`nbnets heatmap`: CAM, Grad-CAM, occlusion and their sanity checks.

- CAM = Grad-CAM at the maps a gap averages, up to the positive scale H*W (float64: to 1e-12);
- Grad-CAM's gradient with respect to a conv block's output against central finite differences on a tiny
  float64 network, and its map from those differences;
- occlusion on a hand-built network whose output reads one region of pixels: the map is non-zero
  exactly where a square touching that region covers;
- the bilinear upsampling against torch.nn.functional.interpolate (when torch is installed);
- the model-randomisation check passes for the methods and flips for a map that ignores the weights;
- the command end to end on a small trained gap network and its JSON snapshot, the files it writes;
- every bad input is one line `Error: ...`, exit code 2, and writes nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from gradcheck import assert_close, numerical_grad
from scipy.stats import spearmanr

from numbanets.nn import arch
from runner.cli import main
from runner.heatmap import methods, sanity
from runner.heatmap.network import Structure, backward_to, forward

# a CAM network on 1x8x8 digits small enough to train for the command tests in a few seconds
SMALL_GAP = "conv8x3x3:p=same-relu-pool2-conv16x3x3:p=same-relu-gap-fc10"


def _build(spec, shape, seed=0, dtype=np.float64):
    return arch.build(arch.parse(spec), shape, np.random.default_rng(seed), dtype)


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_exit_2(result, *needles):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


# ------------------------------------------------------------------ CAM = Grad-CAM --


@pytest.mark.parametrize("spec", [
    "conv3x3x3:p=same-relu-conv5x3x3:p=same-relu-gap-fc4",
    "conv3x3x3:p=same-tanh-pool2-conv6x3x3:p=same-relu-dropout0.3-gap-dropout0.2-fc4",
])
def test_cam_equals_gradcam_at_the_last_conv_up_to_h_times_w(rng, spec):
    model = _build(spec, (2, 6, 6))
    x = rng.standard_normal((5, 2, 6, 6))
    targets = np.array([0, 3, 1, 1, 2])
    hw = 36 if "pool2" not in spec else 9
    cam_raw = methods.cam(model, x, targets, rectify=False)
    gc_raw = methods.gradcam(model, x, targets, rectify=False)  # default: the last conv layer's block
    assert cam_raw.shape == gc_raw.shape == (5, 6 if hw == 36 else 3, 6 if hw == 36 else 3)
    np.testing.assert_allclose(cam_raw, hw * gc_raw, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(methods.cam(model, x, targets), hw * methods.gradcam(model, x, targets), rtol=1e-12,
                               atol=1e-14)
    assert np.any(cam_raw < 0)  # the rectified maps drop the negative part
    rows = sanity.identity(cam_raw, gc_raw)
    assert rows[0]["passed"] is True and rows[0]["value"] < 1e-12
    assert rows[1]["statistic"] == "scale_median" and rows[1]["value"] == pytest.approx(hw)


def test_cam_is_the_class_score_spread_over_the_maps(rng):
    # mean over positions of the raw CAM = class score - bias (Zhou et al.'s decomposition)
    model = _build("conv3x3x3:p=same-relu-gap-fc4", (1, 5, 5))
    x = rng.standard_normal((3, 1, 5, 5))
    logits, _ = forward(model, x)
    targets = np.array([2, 0, 3])
    cam_raw = methods.cam(model, x, targets, rectify=False)
    bias = model[-1].params["b"][targets]
    np.testing.assert_allclose(cam_raw.mean(axis=(1, 2)), logits[np.arange(3), targets] - bias, rtol=1e-12)


def test_identity_check_fails_for_maps_that_are_not_proportional(rng):
    a = rng.standard_normal((3, 4, 4))
    assert sanity.identity(a, 2 * a)[0]["passed"] is True
    assert sanity.identity(a, -a)[0]["passed"] is False  # a negative scale
    assert sanity.identity(a, a + 0.1 * rng.standard_normal(a.shape))[0]["passed"] is False


# ------------------------------------------------------------------ Grad-CAM's gradient --


@pytest.mark.parametrize("layer", [1, 3])
def test_gradcam_gradient_matches_finite_differences(rng, layer):
    spec = "conv3x3x3:p=same-tanh-conv4x3x3:p=same-tanh-pool2-fc3"
    model = _build(spec, (2, 5, 5), seed=4)
    net = Structure(model)
    _, child = net.conv_child(layer)
    x = rng.standard_normal((2, 2, 5, 5))
    targets = np.array([2, 0])
    onehot = np.zeros((2, 3))
    onehot[np.arange(2), targets] = 1.0
    _, kept = forward(model, x, keep={child})
    maps = kept[child].copy()
    analytic = backward_to(model, onehot, child)

    def above(a):  # the logits as a function of the block's output
        h = a
        for c in list(model)[child + 1:]:
            h = c.forward(h)
        return h

    numeric = numerical_grad(above, [maps], 0, onehot)
    assert_close(analytic, numeric, rtol=1e-6, atol=1e-9)
    alpha = numeric.mean(axis=(2, 3))
    want = np.maximum(np.einsum("nk,nkhw->nhw", alpha, maps), 0)
    np.testing.assert_allclose(methods.gradcam(model, x, targets, layer=layer), want, rtol=1e-6, atol=1e-9)
    assert all(not np.any(g) for g in model.gradients())  # the parameter gradients are zeroed again


# ------------------------------------------------------------------ occlusion --


def _one_region_network(region):
    """fc2 on 1x6x6: logit 0 = the sum of the pixels in `region` (rows, cols slices), logit 1 = 0."""
    model = _build("fc2", (1, 6, 6))
    w = np.zeros((2, 1, 6, 6))
    w[0, 0][region] = 1.0
    model[-1].params["w"][...] = w.reshape(2, 36)
    model[-1].params["b"][...] = 0.0
    return model


@pytest.mark.parametrize("patch, stride", [(1, 1), (2, 1), (3, 2), (2, 2), (4, 3)])
def test_occlusion_is_non_zero_exactly_where_the_output_reads(rng, patch, stride):
    region = (slice(2, 4), slice(1, 3))
    model = _one_region_network(region)
    x = 0.5 + rng.random((2, 1, 6, 6))  # every pixel positive: hiding any part of the region lowers logit 0
    fill = np.zeros((1, 6, 6))
    maps = methods.occlusion(model, x, np.array([0, 0]), patch, stride, fill)
    reads = np.zeros((6, 6), bool)
    reads[region] = True
    touched = np.zeros((6, 6), bool)  # pixels covered by at least one square that meets the region
    for i in methods.positions(6, patch, stride):
        for j in methods.positions(6, patch, stride):
            if reads[i:i + patch, j:j + patch].any():
                touched[i:i + patch, j:j + patch] = True
    for m in maps:
        np.testing.assert_array_equal(m != 0, touched)
        assert np.all(m[touched] > 0)  # the probability of class 0 drops
    if patch == 1:
        np.testing.assert_array_equal(touched, reads)


def test_occlusion_drop_is_the_probability_drop_and_batches_agree(rng):
    model = _one_region_network((slice(0, 6), slice(0, 6)))
    x = 0.1 * rng.standard_normal((3, 1, 6, 6))  # sums near 0: probabilities away from 0 and 1
    fill = 0.1 * rng.standard_normal((1, 6, 6))
    one = methods.occlusion(model, x, np.array([0, 1, 0]), 6, 1, fill)  # one square: the whole image
    p = lambda img: 1 / (1 + math.exp(-img.sum()))  # softmax of the logits (s, 0), class 0
    np.testing.assert_allclose(one[0], p(x[0]) - p(fill), rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(one[1], (1 - p(x[1])) - (1 - p(fill)), rtol=1e-10, atol=1e-15)
    small = methods.occlusion(model, x, np.array([0, 1, 0]), 2, 1, fill, batch=7)
    np.testing.assert_allclose(small, methods.occlusion(model, x, np.array([0, 1, 0]), 2, 1, fill), rtol=1e-13)


def test_square_positions_reach_the_far_edge():
    assert methods.positions(8, 2, 1) == list(range(7))
    assert methods.positions(8, 3, 2) == [0, 2, 4, 5]
    assert methods.positions(5, 5, 1) == [0]
    with pytest.raises(ValueError, match="larger than the image"):
        methods.positions(4, 5, 1)


# ------------------------------------------------------------------ upsampling --


def test_upsample_is_bilinear_with_half_pixel_centres(rng, torch):
    maps = rng.standard_normal((2, 4, 3))
    got = methods.upsample(maps, 8, 7)
    want = torch.nn.functional.interpolate(torch.from_numpy(maps)[:, None], size=(8, 7), mode="bilinear",
                                           align_corners=False)[:, 0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_upsample_keeps_constants_scales_and_same_size(rng):
    np.testing.assert_allclose(methods.upsample(np.full((1, 3, 3), 2.5), 8, 8), 2.5)
    maps = rng.standard_normal((2, 4, 4))
    np.testing.assert_allclose(methods.upsample(3 * maps, 8, 8), 3 * methods.upsample(maps, 8, 8), rtol=1e-13)
    np.testing.assert_array_equal(methods.upsample(maps, 4, 4), maps)


# ------------------------------------------------------------------ sanity checks --


def test_spearman_matches_scipy_and_is_nan_for_a_constant_map(rng):
    a, b = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    b[0, :3] = b[1, 1]  # ties
    assert sanity.spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel())[0], rel=1e-12)
    assert math.isnan(sanity.spearman(a, np.zeros((4, 5))))
    value, constant = sanity.mean_spearman(np.stack([a, a]), np.stack([a, np.zeros((4, 5))]))
    assert (value, constant) == (0.5, 1)


def test_randomisation_check_passes_for_the_methods_and_flips_for_a_weight_blind_map(rng):
    spec = "conv4x3x3:p=same-relu-conv6x3x3:p=same-relu-gap-fc3"
    model = _build(spec, (1, 8, 8), seed=11)
    x = rng.random((12, 1, 8, 8))
    targets = np.arange(12) % 3
    weights_before = model.state_dict()

    def compute(m, method):
        if method == "ink":  # a "map" that is the input itself: blind to the weights
            return x[:, 0].copy()
        low = methods.cam(m, x, targets, rectify=False) if method == "cam" else methods.gradcam(m, x, targets)
        return methods.upsample(low, 8, 8)

    trained = {name: compute(model, name) for name in ("cam", "gradcam", "ink")}
    rows = sanity.randomisation(model, spec, (1, 8, 8), compute, trained, seed=0)
    assert [r["randomised"] for r in rows[::3]] == ["fc3", "fc3 conv6x3x3:p=same",
                                                   "fc3 conv6x3x3:p=same conv4x3x3:p=same"]
    final = {r["method"]: r for r in rows if r["passed"] is not None}
    assert final["cam"]["passed"] and final["cam"]["value"] < sanity.RANDOMISATION_MAX
    assert final["gradcam"]["passed"]
    assert final["ink"]["passed"] is False and final["ink"]["value"] == pytest.approx(1.0)
    lines = sanity.verdicts(rows)
    assert any(line.startswith("model randomisation: ink FAILS") for line in lines)
    assert any(line.startswith("model randomisation: cam passes") for line in lines)
    after = model.state_dict()  # the trained weights are back
    assert all(np.array_equal(after[k], v) for k, v in weights_before.items())


def test_randomisation_never_draws_the_runs_own_initial_weights():
    spec = "conv4x3x3-gap-fc3"
    trained_start = _build(spec, (1, 5, 5), seed=0, dtype=np.float32).state_dict()
    fresh = arch.build(arch.parse(spec), (1, 5, 5), sanity.randomisation_rng(0), np.float32).state_dict()
    assert not any(np.array_equal(trained_start[k], fresh[k]) for k in fresh)


def test_agreement_rows():
    a = np.arange(32.0).reshape(2, 4, 4)
    rows = sanity.agreement(a, a)
    assert rows[0]["passed"] is True and rows[0]["value"] == pytest.approx(1.0)
    assert rows[1]["statistic"] == "mean_spearman_other_image" and rows[1]["passed"] is None
    assert sanity.agreement(a, -a)[0]["passed"] is False


# ------------------------------------------------------------------ the command --


@pytest.fixture(scope="module")
def gap_run(tmp_path_factory):
    """A small gap network trained 3 epochs on the digits, and its JSON snapshot."""
    out = tmp_path_factory.mktemp("train")
    result = _run("train-cnn", "--arch", SMALL_GAP, "--epochs", 3, "--no-plot", "--quiet", "--out", out)
    assert result.exit_code == 0, result.output
    run_dir = next((out / "train-cnn").iterdir())
    assert _run("export-json", run_dir).exit_code == 0
    return run_dir


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """A network without gap (the default digits shape, narrower), trained 1 epoch."""
    out = tmp_path_factory.mktemp("plain")
    spec = "conv4x3x3:p=same-relu-pool2-conv8x3x3:p=same-relu-pool2-fc10"
    result = _run("train-cnn", "--arch", spec, "--epochs", 1, "--no-plot", "--quiet", "--out", out)
    assert result.exit_code == 0, result.output
    return next((out / "train-cnn").iterdir())


def _heatmap(out, *args):
    result = _run("heatmap", *args, "--out", out)
    assert result.exit_code == 0, result.output
    return next((Path(out) / "heatmap").iterdir()), result


def test_command_writes_the_maps_the_figure_and_the_checks(gap_run, tmp_path):
    run_dir, result = _heatmap(tmp_path, gap_run, "--images", 4, "--sanity", "--sanity-images", 12)
    assert "methods cam (" in result.output and "gradcam at layer 4 (conv16x3x3:p=same)" in result.output
    assert "occlusion 2x2 squares, stride 1" in result.output
    assert {p.name for p in run_dir.iterdir()} == {"config.json", "heatmaps.npz", "heatmaps.png", "sanity.csv"}
    with np.load(run_dir / "heatmaps.npz") as z:
        assert {"image_index", "class", "method", "map"} <= set(z.files)
        assert z["map"].shape == (12, 8, 8)
        assert list(z["method"]) == ["cam"] * 4 + ["gradcam"] * 4 + ["occlusion"] * 4
        assert list(z["image_index"]) == [0, 1, 2, 3] * 3
        np.testing.assert_array_equal(z["class"], z["predicted"])
        cam, gc = z["map"][:4], z["map"][4:8]
        for c, g in zip(cam, gc):  # the same maps up to a positive scale (CAM = 16 x Grad-CAM at 4x4 maps)
            np.testing.assert_allclose(c, 16 * g, rtol=1e-5, atol=1e-6 * np.abs(c).max())
    checks = pd.read_csv(run_dir / "sanity.csv")
    assert list(checks.columns) == sanity.COLUMNS
    assert set(checks["check"]) == {"model_randomisation", "agreement", "cam_equals_gradcam"}
    identity = checks[(checks["check"] == "cam_equals_gradcam") & (checks["statistic"] == "max_relative_error")]
    assert identity["passed"].item() and identity["value"].item() < 1e-4
    assert (checks[checks["check"] == "model_randomisation"]["images"] == 12).all()
    assert "CAM = Grad-CAM up to a positive scale passes" in result.output
    assert "model randomisation: gradcam passes" in result.output


def test_command_on_a_snapshot_with_target_and_class(gap_run, tmp_path):
    run_dir, result = _heatmap(tmp_path, gap_run / "model.json", "--class", 7, "--images", 2, "--target", 1,
                               "--method", "gradcam,occlusion", "--no-plot")
    with np.load(run_dir / "heatmaps.npz") as z:
        assert set(z["true"]) == {7} and set(z["class"]) == {1}
        assert list(z["method"]) == ["gradcam", "gradcam", "occlusion", "occlusion"]
    assert ", explains 1" in result.output
    assert not (run_dir / "heatmaps.png").exists()


def test_command_leaves_cam_out_of_a_network_without_gap(plain_run, tmp_path):
    run_dir, result = _heatmap(tmp_path, plain_run, "--index", "5,3", "--layer", 1, "--patch", 3, "--stride", 2,
                               "--no-plot")
    assert "cam left out" in result.output and "gradcam at layer 1" in result.output
    with np.load(run_dir / "heatmaps.npz") as z:
        assert list(z["image_index"]) == [5, 3, 5, 3]
        assert set(z["method"]) == {"gradcam", "occlusion"}


@pytest.mark.parametrize("args, needles", [
    (["--method", "cam"], ["cam needs a network that ends in gap-fcK", "pool2-fc10"]),
    (["--layer", 2], ["--layer 2 is 'relu', not a conv layer", "conv layers of this network are 1, 4"]),
    (["--layer", 9], ["--layer 9: the network has layers 1..7"]),
    (["--index", "3,360"], ["--index 360: the test set has 360 images (indices 0..359)"]),
    (["--patch", 9], ["--patch 9 is larger than the 8x8 images"]),
    (["--patch", 2, "--stride", 3], ["--stride 3 is larger than --patch 2"]),
    (["--target", 10], ["--target 10: the network has 10 classes (0..9)"]),
    (["--index", "1", "--images", 2], ["give --images N or --index LIST, not both"]),
    (["--method", "gradcam,lime"], ["--method gradcam,lime: expected a comma list of cam, gradcam, occlusion"]),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(plain_run, tmp_path, args, needles):
    _one_line_exit_2(_run("heatmap", plain_run, *args, "--out", tmp_path), *needles)
    assert not (tmp_path / "heatmap").exists()


def test_bad_sources_are_one_line_errors(tmp_path):
    _one_line_exit_2(_run("heatmap", tmp_path / "nowhere", "--out", tmp_path), "no such run folder")
    _one_line_exit_2(_run("heatmap", tmp_path, "--out", tmp_path), "not a train-cnn run folder")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    _one_line_exit_2(_run("heatmap", bad, "--out", tmp_path), "not valid JSON")


# ------------------------------------------------------------------ on the device (simulator or GPU) --


@pytest.mark.cuda
def test_maps_on_the_device_match_the_cpu(rng):
    from numbanets.device import cuda_status

    usable, reason = cuda_status()
    if not usable:
        pytest.skip(f"needs NUMBA_ENABLE_CUDASIM=1 or a GPU: {reason}")
    spec = "conv3x3x3:p=same-relu-conv4x3x3:p=same-relu-gap-fc3"
    cpu = _build(spec, (1, 5, 5), seed=2)
    gpu = _build(spec, (1, 5, 5), seed=2).to("cuda")
    x = rng.standard_normal((2, 1, 5, 5))
    targets = np.array([1, 2])
    fill = np.zeros((1, 5, 5))
    for got, want in [
        (methods.cam(gpu, x, targets, rectify=False), methods.cam(cpu, x, targets, rectify=False)),
        (methods.gradcam(gpu, x, targets, layer=1), methods.gradcam(cpu, x, targets, layer=1)),
        (methods.occlusion(gpu, x, targets, 2, 1, fill), methods.occlusion(cpu, x, targets, 2, 1, fill)),
    ]:
        assert isinstance(got, np.ndarray)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
