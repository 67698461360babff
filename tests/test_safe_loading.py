"""A checkpoint is data, not code: a crafted .pt whose unpickling would run a command is refused, naming the file, on every
path that reads one (read_checkpoint, load_checkpoint, evaluation's command line, a teacher, resume='auto', pretrained
weights), and the kit's own checkpoints, old ones with NumPy's RNG state included, still load."""
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from tinyaction.checkpoint import load_checkpoint, read_checkpoint
from tinyaction.models import load_pretrained, r2plus1d_tiny, read_state_dict
from tinyaction.train import fit

from conftest import REPO_ROOT, tiny_config

REFUSAL = f"holds a non-data object, {os.system.__module__}.system, and will not be loaded: loading it could run code"


class Payload:
    "A value whose unpickling runs `touch marker`, as a crafted checkpoint would run anything else."

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def crafted(tmp_path):
    "A file with the four keys of a checkpoint and a Payload; returns the file and the marker its command would create."
    path, marker = tmp_path / "crafted.pt", tmp_path / "ran"
    torch.save({"model": r2plus1d_tiny(num_classes=10).state_dict(), "config": {"arch": "r2plus1d_tiny", "size": 16},
                "classes": [str(i) for i in range(10)], "epoch": 0, "payload": Payload(marker)}, path)
    return path, marker


@pytest.fixture(scope="module")
def trained(synthetic_root, tmp_path_factory):
    "A run folder after one epoch of a tiny run."
    out = tmp_path_factory.mktemp("trained")
    fit(tiny_config(synthetic_root, out, epochs=2), stop_after_epochs=1)
    return out


def test_the_crafted_checkpoint_runs_its_command_when_unpickled_as_code(crafted):
    path, marker = crafted
    torch.load(path, weights_only=False)  # what every checkpoint path did before: the payload is live
    assert marker.is_file()


def test_a_crafted_checkpoint_runs_nothing_in_read_checkpoint(crafted):
    path, marker = crafted
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: {REFUSAL}"):
        read_checkpoint(path)
    assert not marker.exists()


def test_a_crafted_checkpoint_runs_nothing_in_load_checkpoint(crafted):
    path, marker = crafted
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: {REFUSAL}"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_crafted_checkpoint_runs_nothing_when_evaluated_from_the_command_line(crafted, tmp_path):
    path, marker = crafted
    result = subprocess.run([sys.executable, "-m", "tinyaction.evaluate", "--checkpoint", str(path), "--out_dir",
                             str(tmp_path / "eval"), "--num_workers", "0"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr  # the refusal in one line
    assert f"python -m tinyaction.evaluate: error: {path}: {REFUSAL}" in result.stderr
    assert not marker.exists()


def test_a_crafted_checkpoint_runs_nothing_as_a_teacher(synthetic_root, crafted, tmp_path):
    path, marker = crafted
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: {REFUSAL}"):
        fit(tiny_config(synthetic_root, tmp_path / "student", epochs=1, teacher=str(path)))
    assert not marker.exists()


def test_a_crafted_checkpoint_runs_nothing_on_resume(synthetic_root, crafted, tmp_path):
    path, marker = crafted
    out = tmp_path / "run"
    out.mkdir()
    planted = shutil.copy(path, out / "checkpoint_last.pt")
    with pytest.raises(ValueError, match=f"^{re.escape(str(planted))}: {REFUSAL}"):
        fit(tiny_config(synthetic_root, out, epochs=2, resume="auto"))
    assert not marker.exists()


def test_crafted_pretrained_weights_run_nothing(crafted):
    path, marker = crafted
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: not a readable weights file"):
        read_state_dict(path)
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: not a readable weights file"):
        load_pretrained(r2plus1d_tiny(num_classes=10), path)
    assert not marker.exists()


def test_a_freshly_trained_checkpoint_is_plain_data(trained):
    path = trained / "checkpoint_last.pt"
    state = torch.load(path, weights_only=True)  # no allowance: tensors, numbers, strings, lists and dicts only
    assert state["config"] == json.loads((trained / "config.json").read_text())
    model, checkpoint = load_checkpoint(path)
    assert checkpoint.epoch == 0 and torch.equal(checkpoint.torch_rng, state["torch_rng"])
    assert all(torch.equal(v, state["model"][k]) for k, v in model.state_dict().items())


def as_numpy_1_wrote_it(path):
    "Rewrite the torch.save file at `path` as NumPy 1 pickled its arrays: numpy.core.multiarray, not numpy._core.multiarray."
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in entries:
            if info.filename.endswith("/data.pkl"):
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
                assert b"numpy.core.multiarray\n_reconstruct" in data
            archive.writestr(info, data)


@pytest.mark.parametrize("numpy_version", [1, 2])
def test_an_old_checkpoint_with_numpy_rng_state_still_loads_and_resumes(synthetic_root, trained, tmp_path, numpy_version):
    out = shutil.copytree(trained, tmp_path / "old")
    state = torch.load(out / "checkpoint_last.pt", weights_only=True)
    np.random.seed(0)
    state.update(rng={"torch": state.pop("torch_rng"), "numpy": np.random.get_state()}, step=4, scaler=None)
    torch.save(state, out / "checkpoint_last.pt")
    if numpy_version == 1:
        as_numpy_1_wrote_it(out / "checkpoint_last.pt")
    with pytest.raises(Exception, match="multiarray._reconstruct"):  # the NumPy array needs the one allowance
        torch.load(out / "checkpoint_last.pt", weights_only=True)
    old = read_checkpoint(out / "checkpoint_last.pt")
    assert torch.equal(old.torch_rng, state["rng"]["torch"]) and old.epoch == 0 and old.classes == state["classes"]
    metrics = fit(tiny_config(synthetic_root, out, epochs=2, resume="auto"))
    assert metrics["best_epoch"] in (0, 1) and read_checkpoint(out / "checkpoint_last.pt").epoch == 1
