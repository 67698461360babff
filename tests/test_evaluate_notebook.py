"""Evaluating a checkpoint: nbs/04_evaluate.ipynb headlessly (val, then test with val thresholds), and the test split
scored against the labels released after the challenge"""
import json
import os
import re
import shutil

import numpy as np
import pytest
import torch

from tinyaction.checkpoint import load_checkpoint
from tinyaction.data import load_split, multi_hot
from tinyaction.evaluate import EvalConfig, evaluate_checkpoint, evaluation_dataset, read_answer
from tinyaction.inference import predict
from tinyaction.metrics import load_scores, load_thresholds, save_thresholds

from conftest import copy_dataset, run_papermill


@pytest.mark.slow
def test_val_then_test_runs_write_what_they_promise(synthetic_root, checkpoint, tmp_path):
    val_out, test_out = tmp_path / "val", tmp_path / "test"
    result = run_papermill("04_evaluate.ipynb", tmp_path / "val.ipynb", ("checkpoint", checkpoint), ("split", "val"),
                           ("num_clips", 3), ("out_dir", val_out), ("batch_size", 4), ("num_workers", 0))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((val_out / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["num_clips"] == 3 and metrics["videos"] == 8
    assert 0 <= metrics["macro_f1"] <= 1 and 0 <= metrics["single_clip"]["macro_f1"] <= 1
    assert len(metrics["per_class"]) == 10
    gain = metrics["threshold_gain"]
    assert gain["tuned_in_sample"] >= gain["fixed_0.5"] and gain["tuned_in_sample"] >= gain["tuned_cross_fit"]

    scores = load_scores(val_out / "scores.npz")
    records = load_split(synthetic_root, "val")
    assert scores["ids"] == [r.id for r in records]
    np.testing.assert_array_equal(scores["targets"], np.stack([multi_hot(r, scores["classes"]) for r in records]))
    model, info = load_checkpoint(checkpoint)
    _, expected = predict(model, evaluation_dataset(info, None, "val"), num_clips=3, progress=False)
    np.testing.assert_allclose(scores["scores"], expected, atol=1e-5)
    executed = (tmp_path / "val.ipynb").read_text()
    assert "Table 1 for this run" in executed and "macro F1 by threshold" in executed and "wall time" in executed

    result = run_papermill("04_evaluate.ipynb", tmp_path / "test.ipynb", ("checkpoint", checkpoint), ("split", "test"),
                           ("thresholds", val_out / "thresholds.json"), ("out_dir", test_out), ("num_workers", 0))
    assert result.returncode == 0, result.stderr[-3000:]
    ids, answers = read_answer(test_out / "answer.txt", num_classes=10)
    test_scores = load_scores(test_out / "scores.npz")
    assert ids == [r.id for r in load_split(synthetic_root, "test")] == test_scores["ids"]
    assert test_scores["targets"] is None
    thresholds = load_thresholds(val_out / "thresholds.json", scores["classes"])
    np.testing.assert_array_equal(answers, test_scores["scores"] >= thresholds.astype(np.float32))


@pytest.mark.slow
def test_a_missing_checkpoint_fails_the_run_with_its_path(tmp_path):
    result = run_papermill("04_evaluate.ipynb", tmp_path / "out.ipynb", ("checkpoint", tmp_path / "nope.pt"),
                           ("out_dir", tmp_path / "eval"))
    assert result.returncode != 0
    assert f"checkpoint not found: {tmp_path / 'nope.pt'}" in result.stderr + result.stdout


def test_load_checkpoint_rebuilds_the_trained_network(checkpoint):
    model, info = load_checkpoint(checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    assert info.classes == state["classes"] and info.config["arch"] == "r2plus1d_tiny"
    assert all(torch.equal(v, state["model"][k]) for k, v in model.state_dict().items())
    assert not model.training


def labelled_test_split(root, dst):
    "A copy of `root` whose test split is its val split: public records without labels, released ones with them."
    (dst / "videos").mkdir(parents=True)
    shutil.copy(root / "class_map.json", dst)
    shutil.copytree(root / "videos" / "val", dst / "videos" / "test")
    released = json.loads((root / "tiny_val_v2.json").read_text())
    public = [{k: r[k] for k in ("id", "path", "dim")} for r in released]
    (dst / "tiny_test_v2_public.json").write_text(json.dumps(public))
    (dst / "tiny_test_v2_private.json").write_text(json.dumps([{**r, "clip_id": f"MEVA_{r['id']}"} for r in released]))
    return dst


def test_the_test_split_is_scored_against_released_labels(synthetic_root, checkpoint, tmp_path):
    root = labelled_test_split(synthetic_root, tmp_path / "released")
    common = dict(checkpoint=checkpoint, num_clips=2, batch_size=4, num_workers=0, device="cpu")
    on_val = evaluate_checkpoint(EvalConfig(**common, split="val", out_dir=tmp_path / "val"))
    blind = evaluate_checkpoint(EvalConfig(**common, data_dir=root, split="test", out_dir=tmp_path / "blind"))
    released = evaluate_checkpoint(EvalConfig(**common, data_dir=root, split="test", out_dir=tmp_path / "released_eval",
                                              annotations=root / "tiny_test_v2_private.json"))
    assert blind.metrics is None and "answer" in blind.files
    assert released.metrics["macro_f1"] == on_val.metrics["macro_f1"]  # same videos, same draws, same labels
    assert released.table[1]["macro_f1"] == on_val.table[1]["macro_f1"]
    np.testing.assert_array_equal(released.scores, blind.scores)
    summary = json.loads((tmp_path / "released_eval/metrics.json").read_text())
    assert summary["split"] == "test" and summary["config"]["annotations"].endswith("tiny_test_v2_private.json")
    assert summary["macro_f1"] == released.metrics["macro_f1"] and (tmp_path / "released_eval/answer.txt").is_file()


def test_a_checkpoint_with_other_class_names_is_refused_naming_the_checkpoint(synthetic_root, checkpoint, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path / "renamed")
    class_map = json.loads((root / "class_map.json").read_text())
    (root / "class_map.json").write_text(json.dumps({f"{name}_v2": i for name, i in class_map.items()}))
    with pytest.raises(ValueError, match="class_map.json has classes .* but the checkpoint was trained on .* does not fit"):
        evaluate_checkpoint(EvalConfig(checkpoint, data_dir=root, split="test", out_dir=tmp_path / "eval", num_workers=0))
    assert not (tmp_path / "eval").exists()


def test_classes_in_another_order_give_answer_columns_in_the_class_map_order(synthetic_root, checkpoint, tmp_path):
    state = torch.load(checkpoint, weights_only=True)
    flipped = {**state, "classes": state["classes"][::-1],
               "model": {**state["model"], "fc.weight": state["model"]["fc.weight"].flip(0),
                         "fc.bias": state["model"]["fc.bias"].flip(0)}}
    torch.save(flipped, tmp_path / "flipped.pt")
    common = dict(split="test", num_clips=2, num_workers=0, device="cpu")
    straight = evaluate_checkpoint(EvalConfig(checkpoint, out_dir=tmp_path / "straight", **common))
    reordered = evaluate_checkpoint(EvalConfig(tmp_path / "flipped.pt", out_dir=tmp_path / "flipped", **common))
    np.testing.assert_allclose(reordered.scores, straight.scores, atol=1e-6)
    assert (tmp_path / "flipped/answer.txt").read_text() == (tmp_path / "straight/answer.txt").read_text()


def test_nan_or_out_of_range_thresholds_are_refused(checkpoint, tmp_path):
    classes = torch.load(checkpoint, weights_only=True)["classes"]
    save_thresholds(tmp_path / "t.json", [float("nan")] + [0.5] * (len(classes) - 1), classes)
    with pytest.raises(ValueError, match=r"thresholds must be numbers in \[0, 1\]; got \['activity_standing: nan'\]"):
        evaluate_checkpoint(EvalConfig(checkpoint, split="test", thresholds=tmp_path / "t.json", out_dir=tmp_path / "e",
                                       num_workers=0))


@pytest.mark.parametrize("name, value", [("num_clips", 0), ("batch_size", 0), ("split", "validation"), ("num_workers", -1)])
def test_evaluation_parameters_are_checked_up_front(name, value):
    with pytest.raises(ValueError, match=f"parameter '{name}': got {value!r}"):
        EvalConfig(**{name: value})


def test_test_annotations_that_are_not_the_splits_videos_are_refused_naming_them(synthetic_root, checkpoint, tmp_path):
    # before: answer.txt was written with the foreign id and without the missing one, silently
    root = labelled_test_split(synthetic_root, tmp_path / "released")
    released = json.loads((root / "tiny_test_v2_private.json").read_text())
    partial = root / "partial.json"
    partial.write_text(json.dumps(released[1:] + [{**released[0], "id": "99999"}]))
    expected = (f"{partial} is not an annotation file of the test split: it lacks 1 of its videos ['{released[0]['id']}'] "
                "and lists 1 others ['99999']")
    with pytest.raises(ValueError, match=re.escape(expected)):
        evaluate_checkpoint(EvalConfig(checkpoint, data_dir=root, split="test", annotations=partial, out_dir=tmp_path / "eval",
                                       num_workers=0))
    assert not (tmp_path / "eval").exists()


def test_thresholds_with_fewer_values_than_class_names_say_so(tmp_path):
    # before: "thresholds are for classes [...], not for this model's [...]" with two identical lists
    path = tmp_path / "short.json"
    path.write_text(json.dumps({"classes": list("abcdefghij"), "thresholds": [0.5] * 9}))
    with pytest.raises(ValueError, match="short.json: 10 class names but 9 thresholds: one per class is needed"):
        load_thresholds(path, list("abcdefghij"))


def test_a_scores_file_holding_objects_is_refused_naming_it_and_nothing_is_unpickled(tmp_path):
    marker = tmp_path / "ran"

    class Planted:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    np.savez(tmp_path / "planted.npz", ids=np.array([Planted()], dtype=object), scores=np.zeros((1, 1)),
             classes=np.array(["a"]), thresholds=np.array([0.5]))
    with pytest.raises(ValueError, match="planted.npz: not a readable scores file"):
        load_scores(tmp_path / "planted.npz")
    assert not marker.exists()
