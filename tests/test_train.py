"The training loop: exact resume, NaN guard, outputs, and the notebook run headlessly by papermill."
import json
from dataclasses import replace

import pytest
import torch

from conftest import run_papermill
from tinyaction.data import ClipNormalize
from tinyaction.models import r2plus1d_tiny, to_fast_path
from tinyaction.train import NonFiniteLossError, TrainConfig, fit, train_one_epoch, train_step


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


def test_a_late_nan_names_its_batch_although_losses_are_checked_in_windows():
    model = r2plus1d_tiny(num_classes=3)
    clips = torch.randint(0, 256, (2, 3, 4, 16, 16), dtype=torch.uint8)
    batches = [(clips, torch.full((2, 3), float("nan") if step == 21 else 0.0), [f"clip{step}a", f"clip{step}b"])
               for step in range(30)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 2, batch 21 \(ids \['clip21a', 'clip21b'\]"):
        train_one_epoch(model, batches, torch.nn.BCEWithLogitsLoss(), optimizer, scheduler, torch.device("cpu"),
                        amp=False, grad_clip=1.0, epoch=2)


def test_a_channels_last_step_matches_a_contiguous_step():
    torch.manual_seed(0)
    fast, plain = r2plus1d_tiny(num_classes=3), r2plus1d_tiny(num_classes=3)
    plain.load_state_dict(fast.state_dict())
    to_fast_path(fast, channels_last=True), to_fast_path(plain, channels_last=False)
    clips, targets = torch.randint(0, 256, (4, 3, 4, 16, 16), dtype=torch.uint8), (torch.rand(4, 3) < 0.3).float()
    losses = [train_step(m, clips, targets, torch.nn.BCEWithLogitsLoss(), torch.optim.SGD(m.parameters(), lr=0.1),
                         ClipNormalize()) for m in (fast, plain)]
    assert torch.allclose(losses[0], losses[1], atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(fast.parameters(), plain.parameters()))


def test_fit_honours_the_fast_path_switches_and_checks_workers(synthetic_root, tmp_path):
    with pytest.raises(ValueError, match="num_workers must be 'auto' or an int >= 0, got -1"):
        fit(tiny_config(synthetic_root, tmp_path / "bad", num_workers=-1, cache=False))
    weight = "layer1.0.conv1.0.0.weight"
    fit(tiny_config(synthetic_root, tmp_path / "fast", epochs=1, num_workers="auto", cache=False))
    fit(tiny_config(synthetic_root, tmp_path / "plain", epochs=1, channels_last=False))
    fast = torch.load(tmp_path / "fast/checkpoint_last.pt", weights_only=False)["model"][weight]
    plain = torch.load(tmp_path / "plain/checkpoint_last.pt", weights_only=False)["model"][weight]
    assert fast.is_contiguous(memory_format=torch.channels_last_3d) and not fast.is_contiguous()
    assert plain.is_contiguous()
    history = [json.loads(l) for l in (tmp_path / "fast/history.jsonl").read_text().splitlines()]
    assert all(0 <= h["train_seconds"] <= h["seconds"] for h in history)


@pytest.mark.slow
def test_a_compiled_run_writes_checkpoints_that_load_into_an_eager_network(synthetic_root, tmp_path):
    metrics = fit(tiny_config(synthetic_root, tmp_path / "compiled", epochs=1, torch_compile=True))
    state = torch.load(tmp_path / "compiled/checkpoint_last.pt", weights_only=False)
    assert state["config"]["torch_compile"] is True and 0 <= metrics["macro_f1"] <= 1
    r2plus1d_tiny(num_classes=len(state["classes"])).load_state_dict(state["model"])
