"The training loop: exact resume, NaN guard, outputs, and the notebook run headlessly by papermill."
import json
from dataclasses import replace

import pytest
import torch

from conftest import run_papermill
from tinyaction.models import r2plus1d_tiny
from tinyaction.train import NonFiniteLossError, TrainConfig, fit


def tiny_config(root, out_dir, **kw) -> TrainConfig:
    defaults = dict(clip_len=4, size=16, epochs=3, batch_size=4, num_workers=0, lr=1e-2)
    return TrainConfig(data_dir=str(root), out_dir=str(out_dir), **{**defaults, **kw})


def test_outputs_and_history(synthetic_root, tmp_path):
    metrics = fit(tiny_config(synthetic_root, tmp_path / "run", epochs=2))
    out = tmp_path / "run"
    for name in ("config.json", "history.jsonl", "metrics.json", "checkpoint_last.pt", "checkpoint_best.pt"):
        assert (out / name).is_file(), name
    history = [json.loads(l) for l in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1]
    assert json.loads((out / "metrics.json").read_text())["best_epoch"] == metrics["best_epoch"] in (0, 1)
    assert 0 <= metrics["macro_f1"] <= 1 and len(metrics["per_class"]) == 10
    checkpoint = torch.load(out / "checkpoint_last.pt", weights_only=False)
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "epoch", "step", "config"} <= set(checkpoint)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(synthetic_root, tmp_path):
    straight = tiny_config(synthetic_root, tmp_path / "straight")
    fit(straight)
    interrupted = tiny_config(synthetic_root, tmp_path / "interrupted")
    fit(interrupted, stop_after_epochs=1)
    assert torch.load(tmp_path / "interrupted/checkpoint_last.pt", weights_only=False)["epoch"] == 0
    fit(replace(interrupted, resume="auto"))
    a = torch.load(tmp_path / "straight/checkpoint_last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "interrupted/checkpoint_last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = (tmp_path / "interrupted/history.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [0, 1, 2]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(synthetic_root, tmp_path):
    out = tmp_path / "nan"
    fit(tiny_config(synthetic_root, out, epochs=1))
    good = (out / "checkpoint_last.pt").read_bytes()
    poisoned = r2plus1d_tiny(num_classes=10).state_dict()
    poisoned["fc.bias"] = torch.full((10,), float("nan"))
    torch.save(poisoned, tmp_path / "nan.pth")
    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 0, batch 0"):
        fit(tiny_config(synthetic_root, out, pretrained=str(tmp_path / "nan.pth")))
    assert (out / "checkpoint_last.pt").read_bytes() == good



@pytest.mark.slow
def test_train_notebook_runs_headlessly(synthetic_root, tmp_path):
    out = tmp_path / "nb_run"
    result = run_papermill("03_train.ipynb", tmp_path / "out.ipynb", ("data_dir", synthetic_root), ("out_dir", out),
                           ("epochs", 2), ("size", 16), ("clip_len", 4), ("batch_size", 4), ("num_workers", 0))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["macro_f1"] <= 1 and metrics["best_epoch"] in (0, 1)
    executed = (tmp_path / "out.ipynb").read_text()
    assert "val macro F1" in executed and "wall time" in executed


@pytest.mark.slow
def test_a_failing_cell_makes_papermill_fail(synthetic_root, tmp_path):
    result = run_papermill("03_train.ipynb", tmp_path / "out.ipynb", ("data_dir", synthetic_root),
                           ("out_dir", tmp_path / "bad"), ("loss", "focal"), ("epochs", 1), ("size", 16), ("clip_len", 4))
    assert result.returncode != 0
    assert "loss must be 'asl' or 'bce'" in result.stderr + result.stdout


def test_cache_setting_is_checked_and_does_not_change_the_result(synthetic_root, tmp_path):
    with pytest.raises(ValueError, match="cache must be True, False or 'auto'"):
        fit(tiny_config(synthetic_root, tmp_path / "bad", cache="sometimes"))
    cached = fit(tiny_config(synthetic_root, tmp_path / "cached", epochs=2, cache=True))
    streamed = fit(tiny_config(synthetic_root, tmp_path / "streamed", epochs=2, cache=False))
    a = torch.load(tmp_path / "cached/checkpoint_last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "streamed/checkpoint_last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert cached["macro_f1"] == streamed["macro_f1"]
