"""What the manuals promise about --resume and sample's choice of file, against the code.

- The settings a resume may change: each manual's sentence "On resume only `--a`, ... and `--b` may
  change" names exactly the command's RESUME_OVERRIDES, besides `--out`, which the manuals
  document separately as ignored (the run stays in its folder).
- sample RUN_DIR takes the run's best.npz over its checkpoint.npz, and checkpoint.npz without it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runner.charlm import options as charlm_options
from runner.charlm import sample as sample_cmd
from runner.cnn import options as cnn_options

DOCS = Path(__file__).resolve().parents[1] / "docs" / "commands"


def _documented_overrides(page: str) -> set:
    text = " ".join((DOCS / page).read_text(encoding="utf-8").split())
    m = re.search(r"On resume only (.+?) may change", text)
    assert m, f"{page}: no 'On resume only ... may change' sentence"
    names = {n.replace("-", "_") for n in re.findall(r"`--(?:no-)?([a-z-]+)(?:/--no-[a-z-]+)?`", m[1])}
    assert "ignored" in text[m.end():m.end() + 200] and "`--out`" in text[m.end():m.end() + 200], \
        f"{page}: --out's handling on resume is not stated after the list"
    return names | {"out"}


@pytest.mark.parametrize("page, module", [("train-charlm.md", charlm_options), ("train-cnn.md", cnn_options)])
def test_the_settings_a_resume_may_change_are_the_documented_ones(page, module):
    assert _documented_overrides(page) == set(module.RESUME_OVERRIDES)


def test_sample_prefers_best_npz_over_checkpoint_npz(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ValueError, match="holds no best.npz or checkpoint.npz"):
        sample_cmd.checkpoint_path(str(run))
    (run / "checkpoint.npz").write_bytes(b"")
    assert sample_cmd.checkpoint_path(str(run)) == run / "checkpoint.npz"
    (run / "best.npz").write_bytes(b"")
    assert sample_cmd.checkpoint_path(str(run)) == run / "best.npz"
    assert sample_cmd.checkpoint_path(str(run / "checkpoint.npz")) == run / "checkpoint.npz"
