"Shared fixtures and helpers: paths, PyAV reference decoding, small datasets made by the kit, tiny runs, random weights."
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch import nn

from tinyaction.data import SPLIT_FILES, load_class_map, load_split, multi_hot
from tinyaction.metrics import save_scores
from tinyaction.synthetic import make_synthetic
from tinyaction.train import TrainConfig, fit

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_VIDEOS = Path(os.environ.get("TINYACTION_REAL_VIDEOS", REPO_ROOT.parent / "shared" / "fixtures" / "real_videos"))


def run_papermill(notebook: str, output, *params) -> subprocess.CompletedProcess:
    "Execute nbs/<notebook> with papermill in a separate process, from the repository root, its temporary files beside `output`."
    args = [sys.executable, "-m", "papermill", str(REPO_ROOT / "nbs" / notebook), str(output), "-k", "python3"]
    for name, value in params:
        args += ["-p", name, str(value)]
    # the chapters' own test cells write to tempfile's folder: keep it in the test's tmp_path, which pytest removes
    scratch = Path(output).parent / "tmp"
    scratch.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(scratch)}
    return subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)


def pyav_frames(path) -> np.ndarray:
    "Every frame of a video decoded by PyAV, the reference decoder."
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="session")
def real_videos() -> Path:
    if not REAL_VIDEOS.is_dir():
        pytest.skip(f"real-video fixtures not found at {REAL_VIDEOS} (set TINYACTION_REAL_VIDEOS)")
    return REAL_VIDEOS


@pytest.fixture(scope="session")
def tinyvirat_annotations() -> Path:
    "Excerpts of the released TinyVIRAT-v2 annotation files (no videos), read-only."
    root = REPO_ROOT.parent / "shared" / "fixtures" / "tinyvirat_annotations"
    if not root.is_dir():
        pytest.skip(f"TinyVIRAT-v2 annotation fixtures not found at {root}")
    return root


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    "A small synthetic dataset, made once per test session."
    return make_synthetic(tmp_path_factory.mktemp("synthetic"), n_train=16, n_val=8, n_test=6, seed=3, workers=2)


SAMPLE_ROOT = REPO_ROOT / "data" / "sample"


def write_sample_scores(path, split: str = "val", seed: int = 0, root: Path = SAMPLE_ROOT) -> Path:
    "A scores.npz over `split` of `root` (the committed sample), as 04_evaluate writes it: seeded scores leaning to the truth."
    records, classes = load_split(root, split), load_class_map(root)
    targets = np.stack([multi_hot(r, classes) for r in records])
    scores = np.clip(0.35 * targets + np.random.default_rng(seed).uniform(0, 0.6, targets.shape), 0, 1)
    return save_scores(path, [r.id for r in records], scores, classes, targets)


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    "Run `python -m module args...` from the repository root; fail with its stderr if it fails."
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def tiny_config(root, out_dir, **kw) -> TrainConfig:
    "A training run small enough for a test: 4 frames of 16x16, batches of 4, no loader processes."
    defaults = dict(clip_len=4, size=16, epochs=3, batch_size=4, num_workers=0, lr=1e-2)
    return TrainConfig(data_dir=str(root), out_dir=str(out_dir), **{**defaults, **kw})


def copy_dataset(src, dst) -> Path:
    "A copy of the dataset folder `src` at `dst`, to edit in a test."
    return Path(shutil.copytree(src, dst))


def rewrite_split(root, split: str, edit) -> Path:
    "Apply `edit` (a function that changes the list of records in place) to the annotation file of `split` under `root`."
    path = Path(root) / SPLIT_FILES[split]
    records = json.loads(path.read_text())
    edit(records)
    path.write_text(json.dumps(records))
    return path


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    "Random weights and BN statistics, so that parity tests cover every tensor."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75 if "running_var" in name or name.endswith("bn.weight")
                        else torch.randn(t.shape, generator=g) * (0.05 if t.dim() > 1 else 0.1))
    return model


@pytest.fixture(scope="module")
def checkpoint(synthetic_root, tmp_path_factory):
    "A network trained for one epoch on the small synthetic set: 4 frames of 16x16."
    out = tmp_path_factory.mktemp("trained")
    fit(tiny_config(synthetic_root, out, epochs=1))
    return out / "checkpoint_best.pt"
