"ClipBrowser and ErrorExplorer driven as objects: set filters, step, and check what they display."
import io
import json
from pathlib import Path

import ipywidgets as W
import numpy as np
import pytest
from PIL import Image

from tinyaction.data import SPLIT_FILES, load_split
from tinyaction.metrics import load_scores, save_scores
from tinyaction.video import write_video
from tinyaction.widgets import ClipBrowser, ErrorExplorer, false_positive_cooccurrence

from conftest import SAMPLE_ROOT, copy_dataset, pyav_frames, write_sample_scores


def video_shape(data: bytes, folder: Path) -> tuple[int, int, int]:
    "(frames, height, width) of MP4 bytes, decoded by PyAV, the reference decoder, from a file in `folder`."
    path = folder / "shown.mp4"
    path.write_bytes(data)
    return pyav_frames(path).shape[:3]


def on_show(widget: W.Widget) -> list[W.Widget]:
    "`widget` and the widgets inside it, except those hidden (layout.display 'none') and what they hold."
    if widget.layout.display == "none":
        return []
    return [widget, *(shown for child in getattr(widget, "children", ()) for shown in on_show(child))]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    "Deterministic scores over the sample's val split, as 04_evaluate writes them, and what they hold."
    path = write_sample_scores(tmp_path_factory.mktemp("scores") / "scores.npz")
    data = load_scores(path)
    return path, load_split(SAMPLE_ROOT, "val"), data["classes"], data["targets"], data["scores"]


def test_browser_without_scores_filters_by_class_and_truth():
    browser = ClipBrowser(SAMPLE_ROOT, "train")
    records = load_split(SAMPLE_ROOT, "train")
    assert [r.id for r in browser.selection] == [r.id for r in records]
    assert browser.error.options == ("all",) and browser.order.options == ("dataset order",)
    browser.class_filter.value = "activity_standing"
    browser.truth.value = "has the class"
    expected = [r.id for r in records if "activity_standing" in r.labels]
    assert [r.id for r in browser.selection] == expected
    browser.truth.value = "lacks the class"
    assert [r.id for r in browser.selection] == [r.id for r in records if "activity_standing" not in r.labels]
    assert browser.status.value == f"{len(browser.selection)} of {len(records)} clips"


def test_stepping_and_what_is_displayed(tmp_path):
    browser = ClipBrowser(SAMPLE_ROOT, "train", input_size=112)
    first = browser.current
    browser.step(-1)
    assert browser.current is first
    browser.next_button.click()
    second = browser.current
    assert second is browser.selection[1] and browser.position.value == 1
    assert f"<b>{second.id}</b>" in browser.info.value
    assert f"{second.width}x{second.height} px, {second.frames} frames" in browser.info.value
    assert all(label in browser.info.value for label in second.labels)
    frames, height, width = video_shape(browser.native_video.value, tmp_path)
    zoom = height // second.height
    assert frames == second.frames and zoom % 2 == 0 and (height, width) == (second.height * zoom, second.width * zoom)
    assert video_shape(browser.input_video.value, tmp_path) == (second.frames, 224, 224)
    browser.previous_button.click()
    assert browser.current is first
    browser.position.value = browser.position.max
    browser.step(1)
    assert browser.current is browser.selection[-1]


def test_false_negatives_worst_first_and_errors_in_colour(scored):
    path, records, classes, targets, scores = scored
    browser = ClipBrowser(SAMPLE_ROOT, "val", scores=path)
    c = int(np.argmax(targets.sum(0)))
    browser.show(classes[c], "false negatives")
    missed = np.flatnonzero(targets[:, c].astype(bool) & (scores[:, c] < 0.5))
    worst_first = missed[np.argsort(-(1 - scores[missed, c]), kind="stable")]
    assert len(worst_first) >= 2, "the fixture must give this class missed clips"
    assert [r.id for r in browser.selection] == [records[i].id for i in worst_first]
    assert "darkorange" in browser.info.value and browser.current.id == records[worst_first[0]].id
    browser.error.value = "false positives"
    wrong = np.flatnonzero(~targets[:, c].astype(bool) & (scores[:, c] >= 0.5))
    assert len(wrong) >= 1 and "color:red" in browser.info.value
    assert sorted(r.id for r in browser.selection) == sorted(records[i].id for i in wrong)
    browser.order.value = "score"
    shown = [scores[[r.id for r in records].index(s.id), c] for s in browser.selection]
    assert shown == sorted(shown, reverse=True)


def test_an_empty_selection_clears_the_display(scored):
    path, *_ = scored
    browser = ClipBrowser(SAMPLE_ROOT, "val", scores=path)
    browser.show("activity_standing", "false positives")
    browser.truth.value = "has the class"  # a false positive never has the class
    assert browser.selection == [] and browser.current is None
    assert browser.native_video.value == b"" and browser.strip.value == b""
    assert "No clip matches" in browser.info.value and browser.status.value.startswith("0 of")



def test_stepping_onto_an_unreadable_clip_shows_its_id_labels_and_error_instead_of_the_previous_video(tmp_path):
    root = copy_dataset(SAMPLE_ROOT, tmp_path / "sample")
    good, bad, after = load_split(root, "train")[:3]
    bad.path.write_bytes(b"not a video " * 100)
    browser = ClipBrowser(root, "train")
    previous = browser.native_video.value
    assert browser.current.id == good.id and previous[4:8] == b"ftyp"
    browser.step(1)
    assert browser.current.id == bad.id
    shown = on_show(browser.view)
    text = "".join(w.value for w in shown if isinstance(w, W.HTML))
    assert f"<b>{bad.id}</b>" in text and all(label in text for label in bad.labels)
    assert f"{bad.path}: cannot decode" in text
    assert not [w for w in shown if isinstance(w, W.Video)], "no video is on show for a clip that cannot be read"
    assert (browser.native_video.value, browser.input_video.value, browser.strip.value) == (b"", b"", b"")
    browser.step(1)
    shown = on_show(browser.view)
    assert browser.current.id == after.id and str(bad.path) not in "".join(w.value for w in shown if isinstance(w, W.HTML))
    videos = [w for w in shown if isinstance(w, W.Video)]
    assert len(videos) == 2 and all(v.value[4:8] == b"ftyp" for v in videos) and browser.native_video.value != previous

def test_a_10x10_clip_is_enlarged_without_blurring(tmp_path):
    root = tmp_path / "ten"
    frames = np.zeros((12, 10, 10, 3), np.uint8)
    frames[:, 2:6, 3:5] = (255, 0, 0)
    write_video(root / "videos/val/V/000001.mp4", frames, codec="libx264", pix_fmt="yuv444p", crf=0)
    (root / "class_map.json").write_text(json.dumps({"a": 0, "b": 1}))
    record = {"id": "000001", "video_id": "V", "path": "V/000001.mp4", "dim": [12, 10, 10], "label": ["a"]}
    for split, name in SPLIT_FILES.items():
        (root / name).write_text(json.dumps([record] if split == "val" else []))
    browser = ClipBrowser(root, "val")
    assert video_shape(browser.native_video.value, tmp_path) == (12, 240, 240)
    strip = np.asarray(Image.open(io.BytesIO(browser.strip.value)))
    assert strip.shape[0] == 240
    block = strip[2 * 24:6 * 24, 3 * 24:5 * 24]
    assert (block[..., 0] > 200).all() and (block[..., 1] < 60).all(), "each source pixel must stay a sharp block"
    assert "10x10 px, 12 frames" in browser.info.value


def test_scores_from_another_split_are_refused_with_the_ids(scored, tmp_path):
    path, *_ = scored
    with pytest.raises(ValueError, match="scored ids are not in this split"):
        ClipBrowser(SAMPLE_ROOT, "train", scores=path)


def test_explorer_figures_match_the_scores(scored):
    path, records, classes, targets, scores = scored
    explorer = ErrorExplorer(path, root=SAMPLE_ROOT, split="val")
    per_class = explorer.metrics["per_class"]
    assert [t.name for t in explorer.bars.data] == ["precision", "recall", "f1"]
    assert list(explorer.bars.data[2].y) == [c["f1"] for c in per_class]
    assert list(explorer.bars.data[0].customdata) == targets.sum(0).tolist()
    np.testing.assert_array_equal(explorer.cooccurrence.data[0].z, false_positive_cooccurrence(targets, scores >= 0.5))
    worst = min((c for c in range(len(classes)) if per_class[c]["support"]), key=lambda c: per_class[c]["f1"])
    assert explorer.class_select.value == classes[worst]
    c = int(np.argmax(targets.sum(0)))
    explorer.class_select.value = classes[c]
    truth = targets[:, c].astype(bool)
    np.testing.assert_allclose(sorted(explorer.histogram.data[0].x), sorted(scores[truth, c]))
    np.testing.assert_allclose(sorted(explorer.histogram.data[1].x), sorted(scores[~truth, c]))
    assert explorer.browser.class_filter.value == classes[c] and explorer.browser.error.value == "false negatives"
    explorer.error_type.value = "false positives"
    assert all(classes[c] not in r.labels for r in explorer.browser.selection)


def test_cooccurrence_counts_false_positives_against_true_labels():
    targets = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0]])
    predicted = np.array([[1, 1, 0], [1, 0, 1], [1, 1, 0]])
    expected = np.array([[0, 1, 0], [1, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(false_positive_cooccurrence(targets, predicted), expected)


def test_a_class_with_no_positives(scored, tmp_path):
    path, records, classes, targets, scores = scored
    absent = int(np.argmin(targets.sum(0)))
    targets = targets.copy()
    targets[:, absent] = 0
    no_pos = save_scores(tmp_path / "s.npz", [r.id for r in records], scores, classes, targets)
    explorer = ErrorExplorer(no_pos, root=None)
    explorer.class_select.value = classes[absent]
    assert len(explorer.histogram.data[0].x) == 0 and len(explorer.histogram.data[1].x) == len(records)
    assert explorer.metrics["per_class"][absent]["f1"] == 0.0 and explorer.browser is None


def test_explorer_refuses_an_unlabelled_split(scored, tmp_path):
    path, records, classes, targets, scores = scored
    test_scores = save_scores(tmp_path / "test.npz", [r.id for r in records], scores, classes)
    with pytest.raises(ValueError, match="no targets"):
        ErrorExplorer(test_scores)
