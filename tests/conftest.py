"Shared fixtures: paths, PyAV reference decoding, and small datasets made by the kit itself."
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from tinyaction.data import make_synthetic

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_VIDEOS = Path(os.environ.get("TINYACTION_REAL_VIDEOS", REPO_ROOT.parent / "shared" / "fixtures" / "real_videos"))


def run_papermill(notebook: str, output, *params) -> subprocess.CompletedProcess:
    "Execute nbs/<notebook> with papermill in a separate process, from the repository root."
    args = [sys.executable, "-m", "papermill", str(REPO_ROOT / "nbs" / notebook), str(output), "-k", "python3"]
    for name, value in params:
        args += ["-p", name, str(value)]
    return subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)


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
def synthetic_root(tmp_path_factory) -> Path:
    "A small synthetic dataset, made once per test session."
    return make_synthetic(tmp_path_factory.mktemp("synthetic"), n_train=16, n_val=8, n_test=6, seed=3, workers=2)
