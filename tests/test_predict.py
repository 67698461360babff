"""Predicting on footage (nbs/09_predict.ipynb): the command line on real videos, errors as rows, empty folders, short
recordings, streaming windows against decoding each window alone, segments and their precision/recall, and the notebook
run by papermill."""
import ast
import csv
import json
import subprocess
import sys
from dataclasses import fields

import numpy as np
import pytest
import torch

from tinyaction.checkpoint import load_checkpoint
from tinyaction.inference import predict
from tinyaction.predict import (
    ClipSpec,
    PredictConfig,
    Segment,
    Span,
    Timeline,
    merge_segments,
    predict_windows,
    segment_precision_recall,
    window_starts,
)
from tinyaction.video import read_clip

from conftest import REPO_ROOT, run_papermill

VIDEOS = ("flipping_a_pancake.mkv", "pool_cleaning.mp4", "ucf101_apply_eye_makeup.avi")


@pytest.fixture
def footage(real_videos, tmp_path):
    "A folder of links to the real videos, a sub-folder with a garbage .mp4 and a README."
    folder = tmp_path / "footage"
    (folder / "broken").mkdir(parents=True)
    for name in VIDEOS:
        (folder / name).symlink_to(real_videos / name)
    (folder / "broken" / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (folder / "README.md").write_text("camera notes")
    return folder


def run_predict(*args) -> subprocess.CompletedProcess:
    "`python -m tinyaction.predict args...` from the repository root."
    return subprocess.run([sys.executable, "-m", "tinyaction.predict", *map(str, args)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)


def classes_of(checkpoint) -> list[str]:
    return load_checkpoint(checkpoint)[1].classes


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_the_command_line_scores_each_real_video(checkpoint, real_videos, tmp_path, suffix):
    out = tmp_path / f"predictions{suffix}"
    result = run_predict("--checkpoint", checkpoint, *[real_videos / n for n in VIDEOS], "--out", out, "--num_clips", 2,
                         "--num_workers", 0)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "thresholds: 0.5 for every class (no " in result.stderr
    rows = json.loads(out.read_text()) if suffix == ".json" else list(csv.DictReader(out.open()))
    classes = classes_of(checkpoint)
    assert [row["video"] for row in rows] == [str(real_videos / n) for n in VIDEOS]
    for row in rows:
        scores = np.array([float(row[c]) for c in classes])
        assert not row["error"] and ((0 <= scores) & (scores <= 1)).all()
        labels = row["labels"] if suffix == ".json" else [x for x in row["labels"].split(";") if x]
        assert labels == [c for c, s in zip(classes, scores) if s >= 0.5]


def test_an_unreadable_file_is_a_row_with_its_error_and_a_failed_exit(checkpoint, footage, tmp_path):
    out = tmp_path / "p.csv"
    result = run_predict("--checkpoint", checkpoint, footage, "--out", out, "--num_clips", 1, "--num_workers", 1)
    assert result.returncode == 1
    rows = {row["video"]: row for row in csv.DictReader(out.open())}
    garbage = str(footage / "broken" / "garbage.mp4")
    assert set(rows) == {garbage, *[str(footage / n) for n in VIDEOS]}  # the README is skipped, and the log says so
    assert rows[garbage]["error"].startswith(f"{garbage}: ") and rows[garbage]["labels"] == ""
    assert all(not rows[str(footage / n)]["error"] and rows[str(footage / n)]["activity_walking"] for n in VIDEOS)
    assert f"failed: {garbage}" in result.stderr and "skipped 1 files that are not videos" in result.stderr
    assert "3 of 4 videos scored" in result.stderr


def test_a_folder_without_videos_is_a_clear_error(checkpoint, tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no video here")
    result = run_predict("--checkpoint", checkpoint, tmp_path / "empty", "--out", tmp_path / "p.csv")
    assert result.returncode != 0 and not (tmp_path / "p.csv").exists()
    assert f"{tmp_path / 'empty'}: no video files in these folders or below them" in result.stderr
    assert "found 1 other files" in result.stderr


def test_a_recording_shorter_than_one_window_is_one_window_of_all_its_frames(checkpoint, real_videos, tmp_path):
    video = real_videos / "ucf101_apply_eye_makeup.avi"  # 164 frames at 25 fps: 6.56 s
    out = tmp_path / "short.json"
    result = run_predict("--checkpoint", checkpoint, video, "--out", out, "--window", 10, "--num_clips", 1)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 windows, 6.6 s" in result.stderr and "shorter than one window" in result.stderr
    timeline = json.loads((tmp_path / "short_timeline.json").read_text())
    assert [(row["start"], row["end"]) for row in timeline] == [(0.0, 6.56)]
    segments = json.loads((tmp_path / "short_segments.json").read_text())
    assert all(s["start"] == 0.0 and s["end"] == 6.56 for s in segments)
    assert json.loads(out.read_text())[0]["labels"] == [s["label"] for s in segments]


def test_streaming_windows_score_as_decoding_each_window_alone(checkpoint, real_videos):
    model, info = load_checkpoint(checkpoint)
    spec, video = ClipSpec.of(info, model), real_videos / "pool_cleaning.mp4"  # 300 frames at 30 fps
    timeline = predict_windows(model, video, spec, info.classes, Span.parse("1.5"), Span.parse("20f"), num_clips=2,
                               batch_size=4, device="cpu")
    assert list(zip(timeline.starts, timeline.ends - timeline.starts)) == window_starts(300, 45, 20)
    for start, end, scores in zip(timeline.starts, timeline.ends, timeline.scores):
        picks = start + spec.indices(end - start, 2, [start, end - start])
        clips = torch.from_numpy(read_clip(video, picks.reshape(-1), spec.size)).unflatten(0, (2, spec.clip_len))
        alone = predict(model, [(clips.permute(0, 4, 1, 2, 3), torch.zeros(1), "w")], num_clips=None, progress=False,
                        device="cpu")[1]
        np.testing.assert_allclose(scores, alone[0], atol=1e-5)


def test_consecutive_windows_over_threshold_merge_into_segments():
    timeline = Timeline("v.mp4", 2.0, np.array([0, 2, 4, 6, 8]), np.array([4, 6, 8, 10, 12]),
                        np.array([[0.6, 0.0], [0.7, 0.9], [0.1, 0.9], [0.5, 0.2], [0.9, 0.8]]), ["a", "b"])
    assert merge_segments(timeline, [0.5, 0.85]) == [Segment("v.mp4", "a", 0.0, 3.0, 0.7), Segment("v.mp4", "b", 1.0, 4.0, 0.9),
                                                     Segment("v.mp4", "a", 3.0, 6.0, 0.9)]
    assert merge_segments(timeline, 1.0) == []


def test_segment_precision_and_recall_at_temporal_iou_half():
    truth = [Segment("v", "a", 10, 20, 1), Segment("v", "a", 30, 40, 1), Segment("v", "b", 10, 20, 1), Segment("w", "a", 0, 5, 1)]
    found = [Segment("v", "a", 12, 22, 0.9),  # IoU 8/12: matched
             Segment("v", "a", 10, 20, 0.5),  # the same span, lower score: a duplicate, not matched
             Segment("v", "a", 30, 50, 0.8),  # IoU 10/20 = 0.5: matched (at the bound)
             Segment("v", "b", 15, 30, 0.7),  # IoU 5/20: too little
             Segment("w", "b", 0, 5, 0.9)]  # the right time, the wrong class
    result = segment_precision_recall(found, truth)
    assert (result["matched"], result["found"], result["truth"]) == (2, 5, 4)
    assert result["precision"] == pytest.approx(0.4) and result["recall"] == pytest.approx(0.5)
    assert segment_precision_recall(found, truth, iou=0.6)["matched"] == 1
    assert segment_precision_recall([], truth)["precision"] == 0 and segment_precision_recall(found, [])["recall"] == 0


def test_the_parameters_cell_is_the_config():
    notebook = json.loads((REPO_ROOT / "nbs" / "09_predict.ipynb").read_text())
    (cell,) = [c for c in notebook["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    values = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse("".join(cell["source"])).body}
    assert values == {f.name: f.default for f in fields(PredictConfig)}


@pytest.mark.slow
def test_the_notebook_predicts_with_papermill_parameters(checkpoint, real_videos, tmp_path):
    video, out = real_videos / "pool_cleaning.mp4", tmp_path / "cam.json"
    result = run_papermill("09_predict.ipynb", tmp_path / "out.ipynb", ("checkpoint", checkpoint), ("paths", video), ("out", out),
                           ("window", "2"), ("stride", "1"), ("num_clips", 1), ("num_workers", 0))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [row["video"] for row in rows] == [str(video)] and not rows[0]["error"]
    timeline = json.loads((tmp_path / "cam_timeline.json").read_text())
    assert [(row["start"], row["end"]) for row in timeline] == [(s, s + 2.0) for s in range(9)]
    executed = (tmp_path / "out.ipynb").read_text()
    assert "class scores per window" in executed
