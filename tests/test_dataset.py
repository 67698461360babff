"Annotation parsing (on synthetic files and on the released TinyVIRAT-v2 records), the TinyVirat dataset, skipping bad clips."
import json
import shutil

import pytest
import torch
from torch.utils.data import DataLoader

from tinyaction.data import (
    SPLIT_FILES,
    DatasetFormatError,
    SkippedClipWarning,
    TinyVirat,
    collate_clips,
    load_class_map,
    load_split,
    multi_hot,
)
from tinyaction.synthetic import SYNTHETIC_CLASSES
from tinyaction.video import VideoReadError

from conftest import copy_dataset, rewrite_split


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
    message = rf"{path.name}: record 3 \(id='{rid}'\): unknown class name\(s\) \['activity_flying'\]"
    with pytest.raises(DatasetFormatError, match=message):
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


def test_released_val_records_ids_with_gaps_and_labels(tinyvirat_annotations):
    classes = load_class_map(tinyvirat_annotations)
    assert len(classes) == 26
    records = load_split(tinyvirat_annotations, "val")
    ids = [r.id for r in records]
    assert len(records) == 65 and all(len(i) == 5 and i.isdigit() for i in ids) and ids == sorted(ids)
    assert "00004" not in ids and "00012" not in ids and ids[-1] == "03319", "ids are kept as released, gaps and zeros"
    assert all(1 <= len(r.labels) <= 3 for r in records)
    for record in records:
        assert record.path == tinyvirat_annotations / "videos" / "val" / record.video_id / f"{record.id}.mp4"
        assert multi_hot(record, classes).sum() == len(set(record.labels))


def test_released_public_test_records_have_no_labels(tinyvirat_annotations):
    records = load_split(tinyvirat_annotations, "test")
    assert len(records) == 87 and all(r.labels == () for r in records)
    assert all(r.path == tinyvirat_annotations / "videos" / "test" / f"{r.id}.mp4" for r in records)
    assert {r.id: r.frames for r in records if r.frames < 16} == {"06089": 12, "06096": 6}


def test_released_test_labels_are_read_with_annotations(tinyvirat_annotations):
    "tiny_test_v2_private.json: the test labels released after the challenge, with an extra clip_id on MEVA clips."
    private = tinyvirat_annotations / "tiny_test_v2_private.json"
    assert any("clip_id" in raw for raw in json.loads(private.read_text()))
    labelled = load_split(tinyvirat_annotations, "test", annotations=private)
    public = {r.id: r for r in load_split(tinyvirat_annotations, "test")}
    assert len(labelled) == 71 and all(r.labels for r in labelled)
    for record in labelled:
        assert record.path == tinyvirat_annotations / "videos" / "test" / f"{record.id}.mp4"
        if record.id in public:
            assert (record.path, record.frames, record.width, record.height) == (
                public[record.id].path, public[record.id].frames, public[record.id].width, public[record.id].height)
    dataset = TinyVirat(tinyvirat_annotations, "test", annotations=private)
    assert [r.id for r in dataset.records] == [r.id for r in labelled]
    assert dataset.records[-1].labels == ("Talking",) and dataset.records[-1].frames == 6


def test_missing_or_unlabelled_annotations_are_named(tinyvirat_annotations, tmp_path):
    missing = tmp_path / "tiny_test_v2_private.json"
    with pytest.raises(DatasetFormatError, match=rf"{missing}: file not found"):
        load_split(tinyvirat_annotations, "test", annotations=missing)
    with pytest.raises(DatasetFormatError, match=rf"{missing}: file not found"):
        TinyVirat(tinyvirat_annotations, "test", annotations=missing)
    public = tinyvirat_annotations / SPLIT_FILES["test"]
    unlabelled = r"tiny_test_v2_public.json: record 0 \(id='00000'\): missing key\(s\) \['label'\]"
    with pytest.raises(DatasetFormatError, match=unlabelled):
        load_split(tinyvirat_annotations, "val", annotations=public)


def test_test_split_with_a_label_file_gives_targets_from_test_videos(synthetic_root, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path / "labelled")
    raw = json.loads((root / SPLIT_FILES["test"]).read_text())
    labels = [[SYNTHETIC_CLASSES[i % 10], SYNTHETIC_CLASSES[(i + 3) % 10]] for i in range(len(raw))]
    released = tmp_path / "test_labels.json"
    released.write_text(json.dumps([{**record, "label": label, "clip_id": f"c{i}"}
                                    for i, (record, label) in enumerate(zip(raw, labels))]))
    unlabelled = TinyVirat(root, "test", clip_len=4, size=16)
    labelled = TinyVirat(root, "test", clip_len=4, size=16, annotations=released)
    for i in range(len(raw)):
        clip, target, clip_id = labelled[i]
        assert clip_id == raw[i]["id"] and torch.equal(clip, unlabelled[i][0])
        assert [labelled.classes[j] for j in target.nonzero().flatten()] == sorted(labels[i], key=SYNTHETIC_CLASSES.index)
        assert unlabelled[i][1].sum() == 0


def test_a_class_map_index_given_as_a_string_names_the_file(synthetic_root, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path / "strings")
    class_map = json.loads((root / "class_map.json").read_text())
    (root / "class_map.json").write_text(json.dumps({**class_map, "activity_walking": "1"}))
    with pytest.raises(DatasetFormatError, match="class_map.json: indices must be ints; got {'activity_walking': '1'}"):
        load_class_map(root)


def test_non_utf8_bytes_in_an_annotation_file_name_the_file(synthetic_root, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path / "latin1")
    path = root / SPLIT_FILES["val"]
    path.write_bytes(path.read_bytes().replace(b'"label"', '"lab\xe9l"'.encode("latin-1"), 1))
    with pytest.raises(DatasetFormatError, match="tiny_val_v2.json: not UTF-8 text"):
        load_split(root, "val")


@pytest.mark.parametrize("dim", [[10**12, 64, 64], [True, 64, 64], [16, 64.0, 64], [16, 64, 10**6]])
def test_absurd_or_non_int_dims_are_refused(synthetic_root, tmp_path, dim):
    root = copy_dataset(synthetic_root, tmp_path / "dims")
    rewrite_split(root, "val", lambda records: records[2].update(dim=dim))
    with pytest.raises(DatasetFormatError, match=r"record 2 .*'dim' must be \[frames, width, height\], ints"):
        load_split(root, "val")
