"Training under torch.distributed: two gloo processes on CPU against one process, and resume across world sizes."
import json
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest
import torch

from tinyaction.checkpoint import load_checkpoint
from tinyaction.evaluate import evaluation_dataset
from tinyaction.inference import predict
from tinyaction.train import fit

from conftest import REPO_ROOT, tiny_config

pytestmark = pytest.mark.slow


def options(root, out, **kw) -> list[str]:
    "The command-line options of a tiny fp32 run; BatchNorm frozen, since PyTorch's SyncBatchNorm has no CPU version."
    # fp32: the tests compare orders of float additions, which bf16 rounding (the default on some CPUs) would swamp
    config = tiny_config(root, out, **{**dict(epochs=2, lr=1e-3, freeze_bn=True, amp=False), **kw})
    return [arg for name, value in asdict(config).items() for arg in (f"--{name}", str(value))]


def train(args: list[str], processes: int = 1) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = (launcher if processes > 1 else [sys.executable]) + ["-m", "tinyaction.train", *args]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def weights(out) -> dict:
    return torch.load(out / "checkpoint_last.pt", weights_only=True)["model"]


def test_two_gloo_processes_match_one_process(synthetic_root, tmp_path):
    train(options(synthetic_root, tmp_path / "one"))
    train(options(synthetic_root, tmp_path / "two"), processes=2)
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    # Same batches, clips and initialisation; only the order of float additions differs (gloo's all-reduce of
    # two half-batch gradients against one sum, one thread per process against two). AdamW divides each update
    # by the gradient's running scale, so rounding in near-zero gradients grows: after 8 steps at lr 1e-3 the
    # weights were measured 3e-6 to 7e-4 apart (weights of order 0.3), depending on the generated clips.
    assert all(torch.allclose(one[k].float(), two[k].float(), atol=2e-3) for k in one)
    scores = []
    for run in ("one", "two"):
        model, info = load_checkpoint(tmp_path / run / "checkpoint_last.pt")
        scores.append(predict(model, evaluation_dataset(info, None, "val"), num_clips=2, progress=False)[1])
    np.testing.assert_allclose(scores[0], scores[1], atol=1e-3)
    m1, m2 = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("one", "two"))
    for key in ("macro_f1", "micro_f1", "samples_f1", "macro_precision", "macro_recall"):
        assert m1[key] == pytest.approx(m2[key], abs=1e-9), key
    history = (tmp_path / "two" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in history] == [0, 1], "only rank 0 writes"
    assert json.loads(history[0])["train_loss"] == pytest.approx(
        json.loads((tmp_path / "one" / "history.jsonl").read_text().splitlines()[0])["train_loss"], rel=1e-5)


def test_a_one_process_checkpoint_resumes_under_two_processes(synthetic_root, tmp_path):
    train(options(synthetic_root, tmp_path / "straight"))
    fit(tiny_config(synthetic_root, tmp_path / "resumed", epochs=2, lr=1e-3, freeze_bn=True, amp=False), stop_after_epochs=1)
    result = train(options(synthetic_root, tmp_path / "resumed", resume="auto"), processes=2)
    assert "resumed from" in result.stdout
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=2e-3) for k in a)


def test_the_global_batch_must_split_evenly(synthetic_root, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "tinyaction.train",
               *options(synthetic_root, tmp_path / "odd", batch_size=5)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "must be divisible by the world size 2" in result.stderr
