"""Long-tail training options end to end: each new loss and repeat-factor sampling through the main notebook, shot-group
metrics in history.jsonl, and the determinism contract (one process against two, resume) under repeat-factor sampling."""
import json
import subprocess
import sys
from dataclasses import asdict, replace

import pytest
import torch

from tinyaction.checkpoint import read_checkpoint
from tinyaction.train import TrainConfig, build_loss, fit

from conftest import REPO_ROOT, run_papermill, tiny_config

BALANCED = dict(balance="repeat_factor", repeat_threshold=0.5, many_shot=6, few_shot=3)


@pytest.mark.slow
@pytest.mark.parametrize("loss, balance", [("focal", "repeat_factor"), ("db", "none")])
def test_each_new_option_trains_through_the_main_notebook(synthetic_root, tmp_path, loss, balance):
    out = tmp_path / "run"
    result = run_papermill("03_train.ipynb", tmp_path / "out.ipynb", ("data_dir", synthetic_root), ("out_dir", out),
                           ("epochs", 2), ("size", 16), ("clip_len", 4), ("batch_size", 4), ("num_workers", 0),
                           ("loss", loss), ("balance", balance), ("repeat_threshold", 0.5), ("many_shot", 6),
                           ("few_shot", 3))
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert (config["loss"], config["balance"], config["repeat_threshold"]) == (loss, balance, 0.5)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(h["train_loss"])) for h in history)
    assert {"many_shot_f1", "medium_shot_f1", "few_shot_f1"} <= set(history[-1])
    assert history[-1]["skipped_train"] == 0


def test_build_loss_gives_each_loss_with_its_parameters():
    assert type(build_loss(TrainConfig(loss="focal", focal_alpha=-1))).__name__ == "FocalLoss"
    db = build_loss(TrainConfig(loss="db", db_alpha=0.2, db_kappa=0.1, focal_gamma=1.0), class_counts=[8, 2, 0], num_clips=10)
    assert (db.alpha, db.kappa, db.gamma) == (0.2, 0.1, 1.0)
    torch.testing.assert_close(db.bias, -0.1 * torch.log(10 / torch.tensor([8.0, 2.0, 1.0], dtype=torch.float64) - 1) / 2)


def test_repeat_factor_training_resumes_exactly_and_differs_from_plain_training(synthetic_root, tmp_path):
    straight = tiny_config(synthetic_root, tmp_path / "straight", epochs=2, **BALANCED)
    metrics = fit(straight)
    assert {"many_shot_f1", "medium_shot_f1", "few_shot_f1"} <= set(metrics)
    interrupted = replace(straight, out_dir=str(tmp_path / "interrupted"))
    fit(interrupted, stop_after_epochs=1)
    fit(replace(interrupted, resume="auto"))
    a = read_checkpoint(tmp_path / "straight/checkpoint_last.pt").model
    b = read_checkpoint(tmp_path / "interrupted/checkpoint_last.pt").model
    assert all(torch.equal(a[k], b[k]) for k in a)
    fit(replace(straight, out_dir=str(tmp_path / "plain"), balance="none"))
    plain = read_checkpoint(tmp_path / "plain/checkpoint_last.pt").model
    assert any(not torch.equal(a[k], plain[k]) for k in a), "repeat_factor had no effect"


def train_cli(config: TrainConfig, processes: int) -> subprocess.CompletedProcess:
    args = [arg for name, value in asdict(config).items() for arg in (f"--{name}", str(value))]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = (launcher if processes > 1 else [sys.executable]) + ["-m", "tinyaction.train", *args]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_repeat_factor_training_under_two_processes_matches_one(synthetic_root, tmp_path):
    "As tests/test_distributed.py for balance='none' (fp32): same clips and frames, only the order of float additions differs."
    runs = {}
    for processes in (1, 2):
        out = tmp_path / f"p{processes}"
        train_cli(tiny_config(synthetic_root, out, epochs=2, lr=1e-3, freeze_bn=True, amp=False, **BALANCED), processes)
        runs[processes] = torch.load(out / "checkpoint_last.pt", weights_only=True)["model"]
    assert all(torch.allclose(runs[1][k].float(), runs[2][k].float(), atol=2e-3) for k in runs[1])
    first = [json.loads((tmp_path / f"p{p}" / "history.jsonl").read_text().splitlines()[0]) for p in (1, 2)]
    assert first[0]["train_loss"] == pytest.approx(first[1]["train_loss"], rel=1e-5)
