"""Distillation end to end: weight 0 trains bit for bit like no teacher, a larger checkpoint teacher reads the frames at its
size while the student trains at its own, a scores.npz teacher trains through the main notebook, resume stays exact, and
teachers that do not fit the training split are refused by name."""
import json
from dataclasses import replace

import pytest
import torch

from tinyaction.checkpoint import read_checkpoint
from tinyaction.metrics import load_scores, save_scores
from tinyaction.train import build_run, fit

from conftest import run_papermill, tiny_config, write_sample_scores


def weights(out) -> dict[str, torch.Tensor]:
    return read_checkpoint(out / "checkpoint_last.pt").model


def train_split_scores(root, path, drop: int = 0) -> str:
    "A scores.npz of the training split (classes in reverse order), less its first `drop` videos."
    stored = load_scores(write_sample_scores(path, "train", root=root))
    keep = slice(drop, None)
    return str(save_scores(path, stored["ids"][keep], stored["scores"][keep, ::-1], stored["classes"][::-1],
                           stored["targets"][keep, ::-1]))


@pytest.fixture(scope="module")
def teacher_checkpoint(synthetic_root, tmp_path_factory) -> str:
    "A network trained for one epoch at 24x24: a teacher larger than the students' 16x16."
    out = tmp_path_factory.mktemp("teacher")
    fit(tiny_config(synthetic_root, out, epochs=1, size=24))
    return str(out / "checkpoint_last.pt")


def test_weight_zero_trains_bit_for_bit_like_no_teacher(synthetic_root, tmp_path, teacher_checkpoint):
    fit(tiny_config(synthetic_root, tmp_path / "plain", epochs=2, size=24))
    fit(tiny_config(synthetic_root, tmp_path / "zero", epochs=2, size=24, teacher=teacher_checkpoint, distill_weight=0))
    fit(tiny_config(synthetic_root, tmp_path / "half", epochs=2, size=24, teacher=teacher_checkpoint, distill_weight=0.5))
    plain, zero, half = (weights(tmp_path / name) for name in ("plain", "zero", "half"))
    assert plain.keys() == zero.keys() and all(torch.equal(plain[k], zero[k]) for k in plain)
    assert any(not torch.equal(plain[k], half[k]) for k in plain), "the teacher's term had no effect"


def test_a_larger_teacher_reads_frames_at_its_size_and_is_not_trained(synthetic_root, tmp_path, teacher_checkpoint):
    run = build_run(tiny_config(synthetic_root, tmp_path / "student", teacher=teacher_checkpoint, cache=False))
    assert (run.train_set.size, run.val_set.size, run.distill.size, run.distill.teacher.size) == (24, 16, 16, 24)
    clips = torch.stack([run.train_set[i][0] for i in range(2)])
    assert run.distill.student_view(clips).shape[-2:] == (16, 16)
    teacher = run.distill.teacher.model
    trained = {id(p) for group in run.optimizer.param_groups for p in group["params"]}
    assert not trained & {id(p) for p in teacher.parameters()} and not any(p.requires_grad for p in teacher.parameters())
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    fit(tiny_config(synthetic_root, tmp_path / "fit", epochs=1, teacher=teacher_checkpoint))
    saved = read_checkpoint(tmp_path / "fit/checkpoint_last.pt")
    assert saved.model.keys() == run.model.state_dict().keys(), "the checkpoint holds the student only"
    assert saved.config["size"] == 16 and saved.config["teacher"] == teacher_checkpoint
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


@pytest.mark.slow
def test_a_scores_teacher_trains_through_the_main_notebook(synthetic_root, tmp_path):
    teacher = train_split_scores(synthetic_root, tmp_path / "teacher.npz")
    out = tmp_path / "run"
    result = run_papermill("03_train.ipynb", tmp_path / "out.ipynb", ("data_dir", synthetic_root), ("out_dir", out),
                           ("epochs", 2), ("size", 16), ("clip_len", 4), ("batch_size", 4), ("num_workers", 0),
                           ("teacher", teacher), ("distill_weight", 0.5), ("distill_temperature", 2.0))
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert (config["teacher"], config["distill_weight"], config["distill_temperature"]) == (teacher, 0.5, 2.0)
    assert len((out / "history.jsonl").read_text().splitlines()) == 2


def test_resume_with_a_teacher_is_exact(synthetic_root, tmp_path):
    teacher = train_split_scores(synthetic_root, tmp_path / "teacher.npz")
    fit(tiny_config(synthetic_root, tmp_path / "straight", epochs=2, teacher=teacher))
    interrupted = tiny_config(synthetic_root, tmp_path / "interrupted", epochs=2, teacher=teacher)
    fit(interrupted, stop_after_epochs=1)
    fit(replace(interrupted, resume="auto"))
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "interrupted")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_teachers_that_do_not_fit_are_refused_by_name(synthetic_root, tmp_path):
    partial = train_split_scores(synthetic_root, tmp_path / "partial.npz", drop=3)
    with pytest.raises(ValueError, match=r"partial.npz has no scores for 3 of the 16 training videos"):
        build_run(tiny_config(synthetic_root, tmp_path / "a", teacher=partial))
    with pytest.raises(FileNotFoundError, match="teacher not found"):
        build_run(tiny_config(synthetic_root, tmp_path / "b", teacher=str(tmp_path / "missing.pt")))
    with pytest.raises(Exception, match="distill_temperature"):
        tiny_config(synthetic_root, tmp_path / "c", distill_temperature=0)


def test_a_teacher_scores_file_with_nan_is_refused_naming_it(synthetic_root, tmp_path):
    # before: the loss turned NaN and the guard named a batch, not the teacher file
    path = train_split_scores(synthetic_root, tmp_path / "teacher.npz")
    stored = load_scores(path)
    scores = stored["scores"].copy()
    scores[0, 0] = float("nan")
    save_scores(path, stored["ids"], scores, stored["classes"], stored["targets"])
    with pytest.raises(ValueError, match=f"{path}: 1 scores are not probabilities in \\[0, 1\\]"):
        fit(tiny_config(synthetic_root, tmp_path / "student", teacher=path))
