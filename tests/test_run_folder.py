"""A run's folder is never damaged: bad values are refused before anything is written, a run owns its folder,
a new run does not clobber an old one, history and checkpoint agree after a crash, and runs that would train or
validate on nothing are refused."""
import json
import os
import socket
import subprocess
import sys
from dataclasses import replace

import pytest

from tinyaction.checkpoint import read_checkpoint
from tinyaction.config import ConfigError
from tinyaction.data import TinyVirat
from tinyaction.loaders import cache_splits
from tinyaction.run_folder import RunFolderError
from tinyaction.train import fit

from conftest import REPO_ROOT, copy_dataset, rewrite_split, run_module, tiny_config


def snapshot(folder) -> dict:
    "Every file of `folder` and its bytes."
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def finished(synthetic_root, tmp_path):
    "A finished two-epoch run."
    out = tmp_path / "finished"
    fit(tiny_config(synthetic_root, out, epochs=2))
    return out


def test_a_bad_value_into_a_finished_run_changes_nothing(synthetic_root, finished):
    before = snapshot(finished)
    result = subprocess.run([sys.executable, "-m", "tinyaction.train", "--data_dir", str(synthetic_root), "--out_dir",
                             str(finished), "--epochs", "two"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "python -m tinyaction.train: error: parameter 'epochs': got 'two'; expected an int")
    assert snapshot(finished) == before


@pytest.mark.parametrize("name, value, allowed", [("epochs", -1, "an int >= 1"), ("lr", 0.0, "a number > 0"),
                                                   ("batch_size", 0, "an int >= 1"), ("sampling", "every", "one of"),
                                                   ("loss", "ldam", "one of"), ("val_clips", 0, "an int >= 1")])
def test_out_of_range_values_are_refused_naming_the_parameter(synthetic_root, tmp_path, name, value, allowed):
    with pytest.raises(ConfigError, match=f"parameter '{name}': got {value!r}; expected {allowed}"):
        tiny_config(synthetic_root, tmp_path / "bad", **{name: value})
    assert not (tmp_path / "bad").exists()


def test_a_new_run_in_a_folder_holding_a_run_is_refused_unless_overwrite(synthetic_root, finished):
    before = snapshot(finished)
    with pytest.raises(RunFolderError, match="holds a run .*resume='auto' continues it, overwrite=True replaces it"):
        fit(tiny_config(synthetic_root, finished, epochs=1))
    assert snapshot(finished) == before
    old_events = set(finished.glob("events.out.tfevents.*"))
    assert old_events
    fit(tiny_config(synthetic_root, finished, epochs=1, overwrite=True))
    assert not old_events & set(finished.glob("events.out.tfevents.*")), "the replaced run's TensorBoard events are deleted"
    history = [json.loads(line) for line in (finished / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [0]
    assert read_checkpoint(finished / "checkpoint_last.pt").config["epochs"] == 1


def test_a_second_run_into_a_busy_folder_is_refused_naming_the_first(synthetic_root, tmp_path):
    out = tmp_path / "busy"
    options = dict(data_dir=synthetic_root, out_dir=out, clip_len=4, size=16, epochs=40, batch_size=4, num_workers=0)
    command = [sys.executable, "-m", "tinyaction.train", *[a for k, v in options.items() for a in (f"--{k}", str(v))]]
    first = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in first.stdout:  # blocks until the first run has finished an epoch: it holds its folder by then
            if line.startswith("epoch 0:"):
                break
        assert first.poll() is None, "the first run ended before the second started"
        with pytest.raises(RunFolderError, match=f"is in use by another run \\(pid {first.pid} "):
            fit(tiny_config(synthetic_root, out, epochs=1, resume="auto"))
    finally:
        first.terminate()
        first.wait(timeout=60)


def test_a_lock_left_by_a_killed_run_is_taken_over(synthetic_root, tmp_path):
    out = tmp_path / "killed"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out.mkdir()
    (out / "run.lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    fit(tiny_config(synthetic_root, out, epochs=1))
    assert not (out / "run.lock").exists() and (out / "checkpoint_last.pt").is_file()


def test_a_crash_between_history_and_checkpoint_leaves_no_duplicate_row(synthetic_root, tmp_path):
    out = tmp_path / "crashed"
    fit(tiny_config(synthetic_root, out, epochs=2), stop_after_epochs=1)
    with (out / "history.jsonl").open("a") as f:  # epoch 1's row written, then killed before its checkpoint
        f.write(json.dumps({"epoch": 1, "train_loss": 0.0}) + "\n")
    fit(tiny_config(synthetic_root, out, epochs=2, resume="auto"))
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1] and rows[1]["train_loss"] > 0


def test_a_batch_larger_than_the_train_split_is_refused(synthetic_root, tmp_path):
    with pytest.raises(ValueError, match="batch_size 32 is larger than the training split \\(16 clips"):
        fit(tiny_config(synthetic_root, tmp_path / "big", batch_size=32))
    assert not (tmp_path / "big").exists()


def test_an_empty_train_split_is_refused(synthetic_root, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path / "empty")
    rewrite_split(root, "train", lambda records: records.clear())
    with pytest.raises(ValueError, match="larger than the training split \\(0 clips"):
        fit(tiny_config(root, tmp_path / "run"))


def test_a_val_split_with_no_readable_clip_is_a_clear_error(synthetic_root, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path / "broken_val")
    for video in (root / "videos" / "val").rglob("*.mp4"):
        video.write_bytes(b"not a video")
    with pytest.warns(UserWarning, match="skipping clip"):
        with pytest.raises(RuntimeError, match="no validation clip could be read: all 8 .* were skipped"):
            fit(tiny_config(root, tmp_path / "run", skip_errors=True, cache=False, epochs=1))


def test_resuming_a_checkpoint_of_another_architecture_names_both(synthetic_root, finished):
    with pytest.raises(ValueError, match="was trained as r2plus1d_tiny on 10 classes .* but this run is r2plus1d_18"):
        fit(tiny_config(synthetic_root, finished, arch="r2plus1d_18", epochs=3, resume="auto"))


def test_resume_auto_with_a_corrupt_last_checkpoint_points_to_the_best(synthetic_root, finished):
    last = finished / "checkpoint_last.pt"
    last.write_bytes(last.read_bytes()[:5000])
    with pytest.raises(ValueError, match="checkpoint_last.pt: not a readable checkpoint .*resume=.*checkpoint_best.pt"):
        fit(tiny_config(synthetic_root, finished, epochs=3, resume="auto"))
    run_module("tinyaction.train", "--data_dir", str(synthetic_root), "--out_dir", str(finished), "--epochs", "3",
               "--clip_len", "4", "--size", "16", "--batch_size", "4", "--num_workers", "0", "--lr", "0.01",
               "--resume", str(finished / "checkpoint_best.pt"))  # the run's own lr: a resume may not change it
    assert read_checkpoint(last).epoch == 2


def test_replace_keeps_the_checks(synthetic_root, tmp_path):
    with pytest.raises(ConfigError, match="parameter 'epochs'"):
        replace(tiny_config(synthetic_root, tmp_path), epochs="many")


def test_cache_auto_says_why_it_does_not_cache(synthetic_root, capsys):
    huge = TinyVirat(synthetic_root, "val", clip_len=4, size=8192)
    cache_splits([huge], "auto", workers=1)
    assert "not caching: the splits need" in capsys.readouterr().out and huge.videos is None


def test_an_empty_lock_left_by_a_full_disk_is_stale(synthetic_root, tmp_path):
    # a lock created but never written (ENOSPC) used to refuse every later run: "in use by another run (pid None on None)"
    out = tmp_path / "empty_lock"
    out.mkdir()
    (out / "run.lock").write_text("")
    fit(tiny_config(synthetic_root, out, epochs=1))
    assert not (out / "run.lock").exists() and (out / "checkpoint_last.pt").is_file()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".run.lock")]


def test_a_resume_that_changes_what_the_run_learns_is_refused_and_changes_nothing(synthetic_root, tmp_path):
    out = tmp_path / "changed"
    fit(tiny_config(synthetic_root, out, epochs=2), stop_after_epochs=1)
    before = snapshot(out)
    with pytest.raises(ConfigError, match=r"trained with lr 0.01 \(now 0.5\), loss 'bce' \(now 'asl'\)\. Only \["):
        fit(tiny_config(synthetic_root, out, epochs=2, resume="auto", lr=0.5, loss="asl"))
    assert snapshot(out) == before  # config.json included: a refused resume rewrites nothing


def test_a_resume_may_train_longer_and_says_so(synthetic_root, tmp_path, capsys):
    out = tmp_path / "longer"
    fit(tiny_config(synthetic_root, out, epochs=1))
    final = fit(tiny_config(synthetic_root, out, epochs=2, resume="auto", num_workers=1))
    printed = capsys.readouterr().out
    assert "resuming with epochs 2 (the checkpoint's run had 1)" in printed and "resuming with num_workers 1" in printed
    assert json.loads((out / "config.json").read_text())["epochs"] == 2
    assert [json.loads(line)["epoch"] for line in (out / "history.jsonl").read_text().splitlines()] == [0, 1]
    assert final["best_epoch"] in (0, 1)


@pytest.fixture
def small_disk(tmp_path):
    "A real 1 MB file system (tmpfs), too small for a checkpoint of the demo network; needs root, as CI runs."
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"cannot mount a 1 MB tmpfs here ({result.stderr.strip()}): the full-disk case needs one")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_run_into_a_full_disk_names_it_and_leaves_no_tmp_file_no_row_and_no_lock(synthetic_root, small_disk):
    # before: run.lock could be left empty ("in use by another run (pid None on None)") and history kept a row
    # for an epoch whose checkpoint was never written
    out = small_disk / "run"
    with pytest.raises(OSError, match=rf"{out}/checkpoint_last.pt: no space left on the disk at {small_disk} "
                                      r"\(\d+ bytes free\) for its \d+ bytes"):
        fit(tiny_config(synthetic_root, out, epochs=1))
    left = sorted(p.name for p in out.iterdir())
    assert not [name for name in left if name.endswith(".tmp") or name.startswith(".")], left
    assert "run.lock" not in left and "checkpoint_last.pt" not in left
    assert (out / "history.jsonl").read_text() == ""
