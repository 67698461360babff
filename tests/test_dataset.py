"Annotation parsing, the TinyVirat dataset, skipping bad clips, and the synthetic dataset's layout."
import json
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tinyaction.data import (SPLIT_FILES, SYNTHETIC_CLASSES, SYNTHETIC_VERSION, DatasetFormatError, SkippedClipWarning, TinyVirat,
                             VideoReadError, collate_clips, load_class_map, load_split, make_synthetic, multi_hot,
                             read_clip)


def copy_dataset(src, dst):
    return shutil.copytree(src, dst)


def rewrite_split(root, split, edit):
    path = root / SPLIT_FILES[split]
    records = json.loads(path.read_text())
    edit(records)
    path.write_text(json.dumps(records))
    return path


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


def test_synthetic_statistics():
    "Checked on a larger set: label imbalance, co-occurring labels, short clips."
    from tinyaction.data import _render_scene
    labels, sizes, short = [], [], 0
    for i in range(300):
        rng = np.random.default_rng([11, i])
        frames, clip_labels = _render_scene(rng)
        labels.append(clip_labels)
        short += frames.shape[0] < 16
    counts = {c: sum(c in l for l in labels) for c in SYNTHETIC_CLASSES}
    assert min(counts.values()) > 0 and max(counts.values()) > 4 * min(counts.values())
    assert sum(len(l) > 1 for l in labels) > 60
    assert short > 0


def test_dataset_shapes_and_types(synthetic_root):
    ds = TinyVirat(synthetic_root, "train", clip_len=16, size=112)
    clip, target, clip_id = ds[0]
    assert clip.shape == (3, 16, 112, 112) and clip.dtype == torch.uint8
    assert target.shape == (len(SYNTHETIC_CLASSES),) and target.dtype == torch.float32
    assert clip_id == ds.records[0].id
    multi = TinyVirat(synthetic_root, "val", clip_len=8, size=(40, 56), num_clips=5)
    clips, _, _ = multi[0]
    assert clips.shape == (5, 3, 8, 40, 56)
    assert torch.equal(multi[0][0], clips), "evaluation sampling must be deterministic"
    test = TinyVirat(synthetic_root, "test")
    assert test[0][1].sum() == 0


def test_training_sampling_follows_torch_seed(synthetic_root):
    ds = TinyVirat(synthetic_root, "train", clip_len=4, size=16)
    torch.manual_seed(0)
    a = ds[2][0]
    torch.manual_seed(0)
    assert torch.equal(ds[2][0], a)


def test_dataloader_with_two_workers(synthetic_root):
    ds = TinyVirat(synthetic_root, "train", clip_len=16, size=64)
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_clips, persistent_workers=True)
    ids = []
    for clips, targets, batch_ids in loader:
        assert clips.shape[1:] == (3, 16, 64, 64) and clips.dtype == torch.uint8
        assert targets.shape[1] == len(ds.classes)
        ids += list(batch_ids)
    assert sorted(ids) == sorted(r.id for r in ds.records)


def test_unreadable_clip_raises_or_is_skipped_with_a_report(synthetic_root, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path / "broken")
    bad = load_split(root, "train")[1]
    bad.path.write_bytes(b"")
    with pytest.raises(VideoReadError, match=bad.path.name):
        TinyVirat(root, "train")[1]
    ds = TinyVirat(root, "train", size=32, skip_errors=True)
    with pytest.warns(SkippedClipWarning, match=f"skipping clip {bad.id}: .*{bad.path.name}: empty file"):
        assert ds[1] is None
    with pytest.warns(SkippedClipWarning):
        batch = collate_clips([ds[0], ds[1], ds[2]])
    assert list(batch[2]) == [ds.records[0].id, ds.records[2].id]


def test_unknown_class_name_is_reported_with_file_and_id(synthetic_root, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path / "unknown")
    def edit(records):
        records[3]["label"] = ["activity_flying"]
    path = rewrite_split(root, "train", edit)
    rid = json.loads(path.read_text())[3]["id"]
    with pytest.raises(DatasetFormatError, match=rf"{path.name}: record 3 \(id='{rid}'\): unknown class name\(s\) \['activity_flying'\]"):
        load_split(root, "train")


@pytest.mark.parametrize("breakage,message", [
    (lambda r: r.pop("dim"), r"missing key\(s\) \['dim'\]"),
    (lambda r: r.update(dim=[12, 40]), r"'dim' must be \[frames, width, height\]"),
    (lambda r: r.update(label="activity_walking"), r"'label' must be a list"),
    (lambda r: r.update(path=None), r"'path' must be a non-empty string"),
])
def test_malformed_record_is_reported(synthetic_root, tmp_path, breakage, message):
    root = copy_dataset(synthetic_root, tmp_path / "malformed")
    path = rewrite_split(root, "val", lambda records: breakage(records[2]))
    with pytest.raises(DatasetFormatError, match=rf"{path.name}: record 2 \(id='\d{{5}}'\): {message}"):
        load_split(root, "val")


def test_missing_video_is_reported_when_asked(synthetic_root, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path / "missing")
    victim = load_split(root, "val")[0]
    victim.path.unlink()
    assert len(load_split(root, "val")) == 8
    with pytest.raises(DatasetFormatError, match=rf"id='{victim.id}'\): video file not found"):
        load_split(root, "val", check_files=True)


def test_not_json_and_bad_class_map(tmp_path):
    (tmp_path / "class_map.json").write_text('{"a": 0, "b": 2}')
    with pytest.raises(DatasetFormatError, match=r"class_map.json: indices must be 0..1"):
        load_class_map(tmp_path)
    (tmp_path / "class_map.json").write_text('{"a": 0}')
    (tmp_path / SPLIT_FILES["train"]).write_text("[{")
    with pytest.raises(DatasetFormatError, match=r"tiny_train_v2.json: invalid JSON"):
        load_split(tmp_path, "train")


def test_any_class_map_works(tmp_path, synthetic_root):
    "A 3-class dataset in the same layout, with real video files."
    root = tmp_path / "three"
    (root / "videos/train/V").mkdir(parents=True)
    shutil.copy(load_split(synthetic_root, "train")[0].path, root / "videos/train/V/000001.mp4")
    (root / "class_map.json").write_text(json.dumps({"x": 0, "y": 1, "z": 2}))
    (root / SPLIT_FILES["train"]).write_text(json.dumps(
        [{"id": "000001", "video_id": "V", "path": "V/000001.mp4", "dim": [10, 10, 10], "label": ["z", "x"]}]))
    clip, target, _ = TinyVirat(root, "train", clip_len=4, size=24)[0]
    assert target.tolist() == [1, 0, 1] and clip.shape == (3, 4, 24, 24)


def test_committed_sample_is_a_valid_dataset():
    from conftest import REPO_ROOT
    root = REPO_ROOT / "data" / "sample"
    counts = {split: len(load_split(root, split, check_files=True)) for split in SPLIT_FILES}
    assert counts == {"train": 20, "val": 10, "test": 6}
    assert sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) < 1_000_000


def test_cached_dataset_returns_exactly_the_uncached_clips(synthetic_root):
    for split, kw in (("val", dict(num_clips=3, clip_len=8, size=(24, 32))), ("train", dict(clip_len=4, size=20))):
        plain, cached = TinyVirat(synthetic_root, split, **kw), TinyVirat(synthetic_root, split, **kw)
        assert cached.cache_nbytes() == sum(r.frames for r in cached.records) * cached[0][0].shape[-2:].numel() * 3
        cached.cache(workers=2)
        for i in range(len(plain)):
            torch.manual_seed(i)
            a = plain[i]
            torch.manual_seed(i)
            b = cached[i]
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]


def test_caching_a_split_with_a_bad_clip_raises_or_reports_it(synthetic_root, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path / "broken")
    bad = load_split(root, "val")[2]
    bad.path.write_bytes(b"not a video")
    with pytest.raises(VideoReadError, match=bad.path.name):
        TinyVirat(root, "val").cache()
    ds = TinyVirat(root, "val", size=16, skip_errors=True)
    with pytest.warns(SkippedClipWarning, match=f"skipping clip {bad.id}"):
        ds.cache()
    with pytest.warns(SkippedClipWarning, match=f"skipping clip {bad.id}: .*{bad.path.name}"):
        assert ds[2] is None
    assert ds[1] is not None
