"""Inputs found by a hostile probe of the kit (issue "A checkpoint is data, not code"): each stops with an error that names
the file, or is handled as a user would expect, instead of a bare traceback or a silent wrong result."""
import json
import os
import socket

import numpy as np
import pytest

from tinyaction.data import SPLIT_FILES
from tinyaction.evaluate import EvalConfig, evaluate_checkpoint
from tinyaction.hub import PublishedWeights, WeightsDownloadError, fetch_weights
from tinyaction.metrics import load_scores, load_thresholds, save_scores
from tinyaction.models import read_state_dict
from tinyaction.train import fit

from conftest import tiny_config


@pytest.mark.parametrize("content, suffix", [(b"hello", ".pth"), (b"j1234", ".pt"), (b"", ".safetensors"),
                                             (b"garbage", ".safetensors")])
def test_a_weights_file_that_is_not_one_is_named(tmp_path, content, suffix):
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{path}: not a readable weights file"):
        read_state_dict(path)


def test_a_run_killed_before_its_first_checkpoint_resumes_afresh(synthetic_root, tmp_path, capsys):
    out = tmp_path / "killed"
    out.mkdir()
    (out / "config.json").write_text("{}")  # what a run killed in its first epoch leaves
    (out / "history.jsonl").write_text("")
    fit(tiny_config(synthetic_root, out, epochs=1, resume="auto"))
    assert "resume='auto' starts it afresh" in capsys.readouterr().out and (out / "checkpoint_last.pt").is_file()


def test_a_torn_last_history_row_is_dropped_when_the_run_resumes(synthetic_root, tmp_path):
    out = tmp_path / "torn"
    fit(tiny_config(synthetic_root, out, epochs=2), stop_after_epochs=1)
    with (out / "history.jsonl").open("a") as f:
        f.write('{"epoch": 1, "train_lo')  # killed mid-write
    fit(tiny_config(synthetic_root, out, epochs=2, resume="auto"))
    assert [json.loads(line)["epoch"] for line in (out / "history.jsonl").read_text().splitlines()] == [0, 1]


@pytest.mark.parametrize("content", ["42", '"x"', "[1, 2]"])
def test_a_lock_holding_json_that_is_not_an_object_is_stale(synthetic_root, tmp_path, content):
    out = tmp_path / "lock"
    out.mkdir()
    (out / "run.lock").write_text(content)
    fit(tiny_config(synthetic_root, out, epochs=1))
    assert not (out / "run.lock").exists()


def test_scores_files_with_bad_thresholds_or_shapes_are_refused_naming_them(tmp_path):
    ids, classes = ["a", "b"], ["x", "y"]
    save_scores(tmp_path / "nan.npz", ids, np.full((2, 2), 0.5), classes, thresholds=[0.5, float("nan")])
    with pytest.raises(ValueError, match="nan.npz: thresholds must be numbers in \\[0, 1\\]"):
        load_scores(tmp_path / "nan.npz")
    np.savez(tmp_path / "flat.npz", ids=np.array(ids), scores=np.array([0.1, 0.2]), classes=np.array(classes),
             thresholds=np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="flat.npz: scores must be a \\(videos, classes\\) array of numbers"):
        load_scores(tmp_path / "flat.npz")


def test_boolean_thresholds_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "bools.json"
    path.write_text(json.dumps({"classes": ["x", "y"], "thresholds": [True, False]}))
    with pytest.raises(ValueError, match="bools.json: not a thresholds file .*thresholds must be numbers, got \\[True, False\\]"):
        load_thresholds(path, ["x", "y"])


def test_an_annotation_file_with_some_videos_unlabelled_is_refused_naming_them(synthetic_root, tmp_path):
    checkpoint = tmp_path / "run" / "checkpoint_last.pt"
    fit(tiny_config(synthetic_root, tmp_path / "run", epochs=1))
    records = json.loads((synthetic_root / SPLIT_FILES["test"]).read_text())
    half = tmp_path / "half_labels.json"  # released test labels, but only for some of the videos
    half.write_text(json.dumps([{**r, "label": ["activity_walking"]} if i % 2 else r for i, r in enumerate(records)]))
    with pytest.raises(ValueError, match=f"{half}: {(len(records) + 1) // 2} of the test split's videos have no labels"):
        evaluate_checkpoint(EvalConfig(str(checkpoint), split="test", annotations=str(half), out_dir=str(tmp_path / "eval"),
                                       num_workers=0))


def test_a_damaged_cached_weights_file_is_refused_not_reported_fetched(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    monkeypatch.setenv("TINYACTION_WEIGHTS_URL", f"http://127.0.0.1:{closed.getsockname()[1]}/")
    closed.close()
    weights = PublishedWeights("https://example.invalid/", "r2plus1d_18-91a641e6.pth", "91a641e6")
    weights.cache_path.parent.mkdir(parents=True)
    weights.cache_path.write_bytes(b"12345")
    with pytest.raises(WeightsDownloadError, match="the cached file does not match its SHA-256 .*delete it to download"):
        fetch_weights(weights, progress=False)
    assert os.path.getsize(weights.cache_path) == 5  # left for the user to inspect


def test_a_finished_run_whose_last_outputs_did_not_fit_writes_them_on_resume(synthetic_root, tmp_path, capsys):
    # what a full disk between checkpoint_last.pt and checkpoint_best.pt leaves: a resume used to exit 0 without them
    out = tmp_path / "full"
    fit(tiny_config(synthetic_root, out, epochs=1))
    (out / "checkpoint_best.pt").unlink()
    (out / "metrics.json").unlink()
    final = fit(tiny_config(synthetic_root, out, epochs=1, resume="auto"))
    assert "the outputs that were missing are written now" in capsys.readouterr().out
    assert (out / "checkpoint_best.pt").read_bytes() == (out / "checkpoint_last.pt").read_bytes()
    assert json.loads((out / "metrics.json").read_text())["macro_f1"] == final["macro_f1"]
