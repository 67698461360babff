"make_synthetic: the TinyVIRAT-v2 layout, determinism to the byte, the committed sample, and regeneration on a new version."
import json

import numpy as np
import pytest

from tinyaction.data import SPLIT_FILES, load_class_map, load_split, multi_hot
from tinyaction.synthetic import SYNTHETIC_CLASSES, SYNTHETIC_VERSION, _new_scene, make_synthetic
from tinyaction.video import read_clip

from conftest import REPO_ROOT


def test_synthetic_layout_and_schema(synthetic_root):
    root = synthetic_root
    assert json.loads((root / "class_map.json").read_text()) == {c: i for i, c in enumerate(SYNTHETIC_CLASSES)}
    for split, n in (("train", 16), ("val", 8), ("test", 6)):
        raw = json.loads((root / SPLIT_FILES[split]).read_text())
        assert isinstance(raw, list) and len(raw) == n
        for rec in raw:
            if split == "test":
                assert set(rec) == {"id", "path", "dim"} and rec["path"] == f"{rec['id']}.mp4" and len(rec["id"]) == 5
            else:
                assert set(rec) == {"id", "video_id", "path", "dim", "label"}
                assert rec["path"] == f"{rec['video_id']}/{rec['id']}.mp4"
                assert len(rec["id"]) == (6 if split == "train" else 5) and rec["label"]
            assert (root / "videos" / split / rec["path"]).is_file()
    val_ids = [int(r["id"]) for r in json.loads((root / SPLIT_FILES["val"]).read_text())]
    assert val_ids == sorted(val_ids)


def test_synthetic_round_trips_through_load_split(synthetic_root):
    classes = load_class_map(synthetic_root)
    for split in SPLIT_FILES:
        for record in load_split(synthetic_root, split, check_files=True):
            frames = read_clip(record.path)
            assert frames.shape == (record.frames, record.height, record.width, 3)
            assert multi_hot(record, classes).sum() == len(record.labels)


def test_synthetic_is_deterministic_and_sized_like_tinyvirat(synthetic_root, tmp_path):
    again = make_synthetic(tmp_path / "again", n_train=16, n_val=8, n_test=6, seed=3, workers=1)
    for split in SPLIT_FILES:
        assert (again / SPLIT_FILES[split]).read_text() == (synthetic_root / SPLIT_FILES[split]).read_text()
    videos = sorted(p.relative_to(again) for p in (again / "videos").rglob("*.mp4"))
    assert len(videos) == 30
    for video in videos:
        assert (again / video).read_bytes() == (synthetic_root / video).read_bytes(), f"{video} differs between the two runs"
    records = load_split(again, "train")
    assert all(12 <= r.width <= 128 and 12 <= r.height <= 128 and 10 <= r.frames <= 150 for r in records)


def test_a_dataset_from_an_older_generator_is_made_again(tmp_path):
    root = make_synthetic(tmp_path / "s", n_train=2, n_val=1, n_test=1, seed=5, workers=1)
    stamp = json.loads((root / ".synthetic.json").read_text())
    (root / ".synthetic.json").write_text(json.dumps({**stamp, "version": SYNTHETIC_VERSION - 1}))
    victim = next((root / "videos").rglob("*.mp4"))
    victim.write_bytes(b"")
    make_synthetic(root, n_train=2, n_val=1, n_test=1, seed=5, workers=1)
    assert victim.stat().st_size > 0
    assert json.loads((root / ".synthetic.json").read_text())["version"] == SYNTHETIC_VERSION


def test_committed_sample_is_a_valid_dataset():
    root = REPO_ROOT / "data" / "sample"
    counts = {split: len(load_split(root, split, check_files=True)) for split in SPLIT_FILES}
    assert counts == {"train": 20, "val": 10, "test": 6}
    assert sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) < 1_000_000


def test_committed_sample_is_what_the_generator_makes(tmp_path):
    "data/sample must be regenerated, and SYNTHETIC_VERSION raised, whenever the generator's output changes."
    sample = REPO_ROOT / "data" / "sample"
    params = json.loads((sample / ".synthetic.json").read_text())
    assert params["version"] == SYNTHETIC_VERSION
    again = make_synthetic(tmp_path / "sample", n_train=params["n_train"], n_val=params["n_val"], n_test=params["n_test"],
                           seed=params["seed"], workers=2)
    files = sorted(p.relative_to(sample) for p in sample.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for name in files:
        assert (again / name).read_bytes() == (sample / name).read_bytes(), f"{name} differs from the committed sample"


def test_written_labels_and_sizes_are_the_scenes(synthetic_root):
    "Each clip is a function of (seed, split, index): its record says what its scene holds."
    for code, split in enumerate(("train", "val")):
        for index, record in enumerate(load_split(synthetic_root, split)):
            scene = _new_scene(np.random.default_rng([3, code, index]))
            height, width = scene.background.shape[:2]
            assert list(record.labels) == scene.labels
            assert (record.frames, record.width, record.height) == (scene.num_frames, width, height)


def test_negative_counts_are_refused(tmp_path):
    with pytest.raises(ValueError, match="n_test=-2"):
        make_synthetic(tmp_path / "bad", n_test=-2)
    assert not (tmp_path / "bad").exists()
