"""ConvNetJS snapshots against the real ConvNetJS 0.3.0 (npm `convnetjs`), run with node.

export-json --format convnetjs -> ConvNetJS's Net.fromJSON + forward equals numbanets' forward;
a random net built and serialised by ConvNetJS itself -> --init-from equals ConvNetJS's forward;
numbanets -> ConvNetJS JSON -> numbanets is bit-exact; what cannot be expressed is one line, exit 2.

ConvNetJS is found via NUMBANETS_CONVNETJS (.ci/run installs it), else installed with npm into
~/.cache/numbanets/convnetjs; the node tests skip only where node or npm is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from numbanets.nn import arch
from runner.cli import main
from runner.cnn import checkpoint, convnetjs, export_json
from runner.cnn.model import load_data

ROOT = Path(__file__).resolve().parents[1]
VERSION = "0.3.0"


@pytest.fixture(scope="module")
def cjs():
    """The convnetjs package folder (node_modules/convnetjs) of ConvNetJS 0.3.0."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the ConvNetJS checks need it")
    given = os.environ.get("NUMBANETS_CONVNETJS")
    if given:
        folder = Path(given)
    else:
        prefix = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "numbanets" / "convnetjs"
        folder = prefix / "node_modules" / "convnetjs"
        if not (folder / "package.json").is_file():
            if shutil.which("npm") is None:
                pytest.skip("npm is not installed and NUMBANETS_CONVNETJS is unset: cannot get ConvNetJS")
            subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(prefix),
                            f"convnetjs@{VERSION}"], check=True, timeout=300)
    assert json.loads((folder / "package.json").read_text())["version"] == VERSION
    return folder


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_exit_2(result, *needles):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def _train(out, *args):
    result = _run("train-cnn", "--out", out, "--quiet", "--no-plot", *args)
    assert result.exit_code == 0, result.output
    return max((Path(out) / "train-cnn").iterdir(), key=lambda p: p.stat().st_mtime)


def _convnetjs_probs(cjs, net_file, x, tmp_path) -> np.ndarray:
    inputs, out = tmp_path / "inputs.json", tmp_path / "probs.json"
    inputs.write_text(json.dumps(np.asarray(x, np.float64).tolist()))
    subprocess.run(["node", str(ROOT / "scripts" / "convnetjs_check.js"), str(cjs), str(net_file), str(inputs),
                    str(out)], check=True, timeout=120)
    doc = json.loads(out.read_text())
    assert doc["convnetjs"] == VERSION
    return np.asarray(doc["probabilities"])


def _numbanets_probs(snap, x) -> np.ndarray:
    model = arch.build(arch.parse(snap.arch), snap.input_shape, np.random.default_rng(1), np.float32)
    export_json.load_into(model, snap)
    model.eval()
    z = np.asarray(model.forward(np.ascontiguousarray(x, np.float32)), np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _ckpt_params(run_dir):
    arrays, _ = checkpoint.load(run_dir / "checkpoint.npz")
    return checkpoint.params(arrays)


def test_default_digits_net_in_convnetjs(cjs, tmp_path):
    run_dir = _train(tmp_path, "--epochs", "1")
    result = _run("export-json", run_dir, "--format", "convnetjs")
    assert result.exit_code == 0, result.output
    net_file = run_dir / "model.convnetjs.json"
    doc = json.loads(net_file.read_text())
    assert [e["layer_type"] for e in doc["layers"]] == ["input", "conv", "relu", "pool", "conv", "relu", "pool",
                                                       "fc", "softmax"]
    conv = doc["layers"][1]
    assert (conv["sx"], conv["sy"], conv["stride"], conv["pad"], conv["in_depth"], conv["out_depth"]) == (3, 3, 1, 1,
                                                                                                       1, 32)
    data = load_data({"data": None, "test_fraction": 0.2})
    norm = doc["numbanets"]["normalisation"]
    assert (norm["mean"], norm["std"]) == (data.mean, data.std)
    x = data.x_test[:50]
    theirs = _convnetjs_probs(cjs, net_file, x, tmp_path)
    ours = _numbanets_probs(_snapshot_of(run_dir), x)
    assert theirs.shape == ours.shape == (50, 10) and np.isfinite(theirs).all()
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-5)
    assert (theirs.argmax(1) == ours.argmax(1)).all()


def _snapshot_of(run_dir):
    """The run's checkpoint as a Snapshot, straight from checkpoint.npz (not through any JSON)."""
    arrays, meta = checkpoint.load(run_dir / "checkpoint.npz")
    layers = arch.parse(meta["arch"])
    model = arch.build(layers, tuple(meta["input_shape"]), np.random.default_rng(0), np.float32)
    names = {id(child): name for name, child in model.children.items()}
    params = checkpoint.params(arrays)
    weights = [{k: params[f"{names[id(m)]}.{k}"] for k in m.params} for _, m in model.arch_layers]
    return export_json.Snapshot(meta["arch"], tuple(meta["input_shape"]), np.dtype(np.float32), weights)


def test_random_convnetjs_net_imported_by_init_from(cjs, tmp_path):
    net_file = tmp_path / "random.json"
    subprocess.run(["node", str(ROOT / "scripts" / "convnetjs_random_net.js"), str(cjs), str(net_file),
                    "2", "9", "7", "5"], check=True, timeout=60)
    layers = json.loads(net_file.read_text())["layers"]
    assert isinstance(layers[1]["filters"][0]["w"], dict)  # JSON.stringify of a Float64Array: {"0": ..}
    assert (layers[1]["stride"], layers[1]["pad"]) == (2, 1)
    snap = export_json.read(net_file)  # what --init-from reads
    assert snap.arch == "conv4x3x3:s=2:p=1-pool2x2:s=1:p=0-relu-conv3x2x2:s=1:p=0-tanh-fc5"
    assert snap.input_shape == (2, 9, 7)
    x = np.random.default_rng(3).standard_normal((20, 2, 9, 7)).astype(np.float32)
    theirs = _convnetjs_probs(cjs, net_file, x, tmp_path)
    ours = _numbanets_probs(snap, x)
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-5)
    assert (theirs.argmax(1) == ours.argmax(1)).all()
    # through the command: --epochs 0 evaluates the imported net, its checkpoint holds the file's weights
    data = tmp_path / "d.npz"
    np.savez(data, x=np.random.default_rng(4).standard_normal((40, 2, 9, 7)).astype(np.float32),
             y=np.arange(40) % 5)
    run_dir = _train(tmp_path, "--data", data, "--init-from", net_file, "--epochs", "0")
    got = _ckpt_params(run_dir)
    want = [v for found in snap.weights for v in found.values()]
    assert len(got) == len(want)  # the model's names differ from the file's order: compare (shape, bytes)
    by_shape = sorted((v.shape, v.tobytes()) for v in got.values())
    assert by_shape == sorted((v.shape, v.tobytes()) for v in want)


def test_round_trip_is_bit_exact(tmp_path):
    run_dir = _train(tmp_path, "--epochs", "1", "--arch", "conv6x3x3:s=2:p=1-tanh-pool2:s=1-conv5x2x2-sigmoid-"
                     "fc12-relu-dropout0.25-fc10")
    out = tmp_path / "net.json"
    assert _run("export-json", run_dir, "--format", "convnetjs", "-o", out).exit_code == 0
    snap = export_json.read(out)
    assert snap.arch == "conv6x3x3:s=2:p=1-tanh-pool2x2:s=1:p=0-conv5x2x2:s=1:p=0-sigmoid-fc12-relu-dropout0.25-fc10"
    again = _train(tmp_path, "--init-from", out, "--epochs", "0")
    a, b = _ckpt_params(run_dir), _ckpt_params(again)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype == np.float32
        assert (a[key].view(np.uint32) == b[key].view(np.uint32)).all(), key


def _checkpoint_for(tmp_path, spec, channels=1):
    data = tmp_path / f"c{channels}.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((30, channels, 8, 8)).astype(np.float32),
             y=np.arange(30) % 3)
    return _train(tmp_path, "--data", data, "--arch", spec, "--epochs", "0")


def test_refuses_groups(tmp_path):
    run_dir = _checkpoint_for(tmp_path, "conv4x3x3:g=2-relu-fc3", channels=2)
    _one_line_exit_2(_run("export-json", run_dir, "--format", "convnetjs"), "layer 1 (conv4x3x3:g=2)", "groups=2")


def test_refuses_asymmetric_same_padding(tmp_path):
    run_dir = _checkpoint_for(tmp_path, "conv4x2x2:p=same-fc3")
    _one_line_exit_2(_run("export-json", run_dir, "--format", "convnetjs"), "layer 1 (conv4x2x2:p=same)",
                     "asymmetric padding")


def test_refuses_gap(tmp_path):
    try:
        arch.parse("conv4x3x3-relu-gap-fc3")
    except arch.ArchError:
        pytest.skip("this numbanets has no gap layer token yet")
    run_dir = _checkpoint_for(tmp_path, "conv4x3x3-relu-gap-fc3")
    _one_line_exit_2(_run("export-json", run_dir, "--format", "convnetjs"), "layer 3 (gap)",
                     "global average pooling")


def test_refuses_malformed_convnetjs_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"net": []}))
    _one_line_exit_2(_run("train-cnn", "--out", tmp_path, "--init-from", bad, "--epochs", "0"), "no \"layers\" list")
    doc = {"layers": [
        {"layer_type": "input", "out_sx": 8, "out_sy": 8, "out_depth": 1},
        {"layer_type": "fc", "out_depth": 10, "out_sx": 1, "out_sy": 1, "num_inputs": 64,
         "filters": [{"sx": 1, "sy": 1, "depth": 64, "w": [0.0] * 64} for _ in range(10)],
         "biases": {"sx": 1, "sy": 1, "depth": 10, "w": [0.0] * 10}},
        {"layer_type": "softmax", "out_depth": 10, "out_sx": 1, "out_sy": 1, "num_inputs": 10}]}
    good = tmp_path / "good.json"
    good.write_text(json.dumps(doc))
    assert export_json.read(good).arch == "fc10"  # the file is fine before it is broken below
    doc["layers"][1]["filters"][7]["w"] = [0.0] * 63
    bad.write_text(json.dumps(doc))
    _one_line_exit_2(_run("train-cnn", "--out", tmp_path, "--init-from", bad, "--epochs", "0"),
                     "layer 1 (fc) filter 7", "Vol w has 63 numbers, sx*sy*depth = 64")
    doc["layers"][1]["filters"][7]["w"] = [0.0] * 64
    doc["layers"][1]["layer_type"] = "lrn"
    bad.write_text(json.dumps(doc))
    _one_line_exit_2(_run("train-cnn", "--out", tmp_path, "--init-from", bad, "--epochs", "0"),
                     "layer 1 (lrn)", "numbanets has no such layer")


def test_index_order_against_a_hand_built_vol():
    """One conv filter and one fc row laid out by ConvNetJS's formula w[((sx*y)+x)*depth+d], written by hand."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 3, 2, 4)).astype(np.float32)  # (F, C, KH, KW)
    cjs_vol = [float(w[0, d, y, x]) for y in range(2) for x in range(4) for d in range(3)]
    model = arch.build(arch.parse("conv2x2x4-fc2"), (3, 5, 6), rng, np.float32)
    conv = model.arch_layers[0][1]
    conv.params["w"][...] = w
    fc = model.arch_layers[1][1]
    c, h, wd = 2, 4, 3
    row = np.asarray(fc.params["w"][1]).reshape(c, h, wd)
    doc = convnetjs.to_dict(model, "conv2x2x4-fc2", (3, 5, 6), export_json.exact_floats)
    vol = doc["layers"][1]["filters"][0]
    assert (vol["sx"], vol["sy"], vol["depth"]) == (4, 2, 3)

    def f32(v):  # the file's shortest decimals read back to the same float32 bits
        return np.asarray(v, np.float32).view(np.uint32)

    assert (f32(vol["w"]) == f32(cjs_vol)).all()
    fc_row = [row[d, y, x] for y in range(h) for x in range(wd) for d in range(c)]
    assert (f32(doc["layers"][2]["filters"][1]["w"]) == f32(fc_row)).all()
