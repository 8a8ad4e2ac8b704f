"""Checkpoints and atomic writes (numbanets.checkpoint)."""

import json
import math
import os

import numpy as np
import pytest

from numbanets import checkpoint, nn, optim


def _arrays(rng):
    return {
        "param/w": rng.standard_normal((3, 4)).astype(np.float32),
        "param/b": rng.standard_normal(4),
        "optim/step": np.array(7, dtype=np.int64),
        "ids": np.arange(5, dtype=np.int64),
    }


def test_round_trip(tmp_path, rng):
    arrays = _arrays(rng)
    meta = {"kind": "test", "step": np.int64(12), "loss": np.float32(0.5), "best": math.inf,
            "shape": (3, 4), "flag": np.bool_(True), "vocab": list("ab\n"), "nested": {"x": np.arange(3)},
            "path": tmp_path / "x"}
    written = checkpoint.save(tmp_path / "ckpt.npz", arrays, meta)
    assert written == tmp_path / "ckpt.npz"
    assert sorted(os.listdir(tmp_path)) == ["ckpt.json", "ckpt.npz"]
    loaded, lmeta = checkpoint.load(tmp_path / "ckpt.npz")
    assert list(loaded) == list(arrays)
    for k, v in arrays.items():
        assert loaded[k].dtype == v.dtype and loaded[k].shape == v.shape
        np.testing.assert_array_equal(loaded[k], v)
    assert lmeta["format"] == checkpoint.FORMAT and lmeta["version"] == checkpoint.VERSION
    assert lmeta["step"] == 12 and type(lmeta["step"]) is int
    assert lmeta["loss"] == 0.5 and lmeta["best"] == math.inf and lmeta["shape"] == [3, 4]
    assert lmeta["flag"] is True and lmeta["vocab"] == ["a", "b", "\n"] and lmeta["nested"] == {"x": [0, 1, 2]}
    assert lmeta["path"] == str(tmp_path / "x")
    assert json.loads((tmp_path / "ckpt.json").read_text()) == lmeta
    again, _ = checkpoint.load(tmp_path / "ckpt.json")  # the .json names the same checkpoint
    np.testing.assert_array_equal(again["param/w"], arrays["param/w"])


def test_model_and_optimizer_through_a_checkpoint(tmp_path, rng):
    model = nn.CharLM(5, 3, 1, cell="rnn", rng=rng)
    opt = optim.Adam(model, 1e-2)
    idx = rng.integers(0, 5, (4, 2))
    model.loss_and_grad(idx, idx)
    opt.step()
    arrays = {**{f"param/{k}": v for k, v in model.state_dict().items()},
              **{f"optim/{k}": v for k, v in opt.state_dict().items()}}
    checkpoint.save(tmp_path / "c", arrays, {"model": model.config()})  # ".npz" is added
    loaded, meta = checkpoint.load(tmp_path / "c.npz")
    clone = nn.CharLM(**{**meta["model"], "dtype": np.dtype(meta["model"]["dtype"])}, rng=np.random.default_rng(3))
    clone_opt = optim.Adam(clone, 0.5)
    clone.load_state_dict({k[6:]: v for k, v in loaded.items() if k.startswith("param/")})
    clone_opt.load_state_dict({k[6:]: v for k, v in loaded.items() if k.startswith("optim/")})
    for m, o in ((model, opt), (clone, clone_opt)):
        m.loss_and_grad(idx, idx)
        o.step()
    for (n, a), b in zip(model.state_dict().items(), clone.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=n)


def test_missing_truncated_and_foreign_files(tmp_path, rng):
    with pytest.raises(ValueError, match=r"nope\.npz is not a numbanets checkpoint: the file does not exist"):
        checkpoint.load(tmp_path / "nope.npz")
    path = checkpoint.save(tmp_path / "checkpoint.npz", _arrays(rng), {"kind": "test"})
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 30, 10):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(checkpoint.CheckpointError, match=rf"cut{cut}\.npz is not a numbanets checkpoint"):
            checkpoint.load(bad)
    text = tmp_path / "text.npz"
    text.write_text("hello, not a zip file\n")
    with pytest.raises(ValueError, match="is not a numbanets checkpoint"):
        checkpoint.load(text)
    npy = tmp_path / "single.npz"
    with open(npy, "wb") as f:
        np.save(f, np.arange(3))
    with pytest.raises(ValueError, match="single .npy array"):
        checkpoint.load(npy)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, w=np.ones(3))
    with pytest.raises(ValueError, match="foreign.npz is not a numbanets checkpoint: it has no numbanets meta"):
        checkpoint.load(foreign)
    fake = tmp_path / "fake.npz"
    np.savez(fake, __numbanets_meta__=np.frombuffer(b'{"format": "other"}', dtype=np.uint8))
    with pytest.raises(ValueError, match="format marker"):
        checkpoint.load(fake)


def test_save_creates_the_folder(tmp_path, rng):
    arrays = _arrays(rng)
    written = checkpoint.save(tmp_path / "run" / "deeper" / "ckpt", arrays)
    assert written == tmp_path / "run" / "deeper" / "ckpt.npz"
    loaded, _ = checkpoint.load(written)
    np.testing.assert_array_equal(loaded["param/w"], arrays["param/w"])


def test_save_rejects_bad_meta_before_writing(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        checkpoint.save(tmp_path / "a.npz", {}, {"version": 3})
    with pytest.raises(TypeError, match="cannot be stored as JSON"):
        checkpoint.save(tmp_path / "a.npz", {}, {"x": object()})
    assert os.listdir(tmp_path) == []


def test_atomic_write_leaves_no_temp_file(tmp_path):
    target = tmp_path / "out.txt"
    checkpoint.atomic_write_text(target, "first\n")
    checkpoint.atomic_write_bytes(target, b"second\n")
    assert target.read_text() == "second\n"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch, rng):
    target = tmp_path / "out.bin"
    checkpoint.atomic_write_bytes(target, b"old")
    with pytest.raises(TypeError):
        checkpoint.atomic_write_bytes(target, "not bytes")  # fails inside the write
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.bin"]

    def broken_replace(src, dst):
        raise OSError("disk full")

    path = checkpoint.save(tmp_path / "ck.npz", _arrays(rng), {"step": 1})
    before = path.read_bytes(), (tmp_path / "ck.json").read_text()
    monkeypatch.setattr(checkpoint.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.atomic_write_bytes(target, b"new")
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, {"x": np.zeros(2)}, {"step": 2})
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert (path.read_bytes(), (tmp_path / "ck.json").read_text()) == before
    assert sorted(os.listdir(tmp_path)) == ["ck.json", "ck.npz", "out.bin"]
    assert checkpoint.load(path)[1]["step"] == 1
