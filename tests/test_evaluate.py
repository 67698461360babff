"Metrics against scikit-learn, threshold tuning, the answer file, and multi-clip prediction."
import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_recall_fscore_support

from tinyaction.data import TinyVirat
from tinyaction.evaluate import read_answer, write_answer
from tinyaction.inference import predict
from tinyaction.metrics import multilabel_metrics, tune_thresholds
from tinyaction.zoo import get_model


def random_case(seed, n=200, c=12):
    rng = np.random.default_rng(seed)
    y_true = rng.random((n, c)) < rng.uniform(0.01, 0.4, c)
    y_true[:, 0] = False  # a class with no positives
    y_score = np.clip(0.35 * y_true + rng.random((n, c)) * 0.7, 0, 1)
    y_score[:, 1] = 0.1  # a class never predicted
    return y_true.astype(int), y_score


@pytest.mark.parametrize("seed", range(5))
def test_metrics_equal_scikit_learn(seed):
    y_true, y_score = random_case(seed)
    threshold = np.random.default_rng(seed).uniform(0.3, 0.7, y_true.shape[1]) if seed % 2 else 0.5
    y_pred = (y_score >= threshold).astype(int)
    ours = multilabel_metrics(y_true, y_score, threshold)
    for average in ("macro", "micro", "samples"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        assert np.allclose([ours[f"{average}_precision"], ours[f"{average}_recall"], ours[f"{average}_f1"]], [p, r, f])
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    per_class = ours["per_class"]
    assert np.allclose([c["precision"] for c in per_class], p) and np.allclose([c["f1"] for c in per_class], f)
    assert [c["support"] for c in per_class] == s.tolist()


def test_class_names_and_keys():
    y_true, y_score = random_case(9, c=3)
    m = multilabel_metrics(y_true, y_score, class_names=["a", "b", "c"])
    assert [c["name"] for c in m["per_class"]] == ["a", "b", "c"]
    assert set(m) == {"macro_f1", "macro_precision", "macro_recall", "micro_f1", "micro_precision", "micro_recall",
                      "samples_f1", "samples_precision", "samples_recall", "per_class"}


def test_tuned_thresholds_maximise_each_class_f1():
    y_true, y_score = random_case(3)
    thresholds = tune_thresholds(y_true, y_score)
    assert thresholds[0] == 0.5  # no positives: default kept
    for c in range(2, y_true.shape[1]):
        best = max(f1_score(y_true[:, c], y_score[:, c] >= t, zero_division=0) for t in np.unique(y_score[:, c]))
        assert f1_score(y_true[:, c], y_score[:, c] >= thresholds[c], zero_division=0) == pytest.approx(best)
    assert multilabel_metrics(y_true, y_score, thresholds)["macro_f1"] >= multilabel_metrics(y_true, y_score)["macro_f1"]


def test_answer_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"{i:05d}" for i in range(1, 40, 3)]
    y_pred = (rng.random((len(ids), 26)) < 0.2).astype(int)
    path = write_answer(tmp_path / "answer.txt", ids, y_pred)
    lines = path.read_text().splitlines()
    assert len(lines) == len(ids) and all(len(line.split()) == 27 for line in lines)
    read_ids, read_pred = read_answer(path, num_classes=26)
    assert read_ids == ids and (read_pred == y_pred).all()


def test_answer_file_errors(tmp_path):
    with pytest.raises(ValueError, match="2 ids but 1 prediction rows"):
        write_answer(tmp_path / "a.txt", ["1", "2"], [[0, 1]])
    (tmp_path / "bad.txt").write_text("00001 0 1\n00002 0 2\n")
    with pytest.raises(ValueError, match=r"bad.txt: line 2"):
        read_answer(tmp_path / "bad.txt")


def test_predict_averages_clips_and_is_deterministic(synthetic_root):
    torch.manual_seed(0)
    model = get_model("r2plus1d_tiny", num_classes=10)
    val = TinyVirat(synthetic_root, "val", clip_len=4, size=24)
    ids, mean_scores = predict(model, val, num_clips=3, batch_size=3, progress=False, amp=False)
    _, max_scores = predict(model, val, num_clips=3, batch_size=3, progress=False, reduce="max", amp=False)
    _, default_scores = predict(model, val, num_clips=3, batch_size=3, progress=False)  # bf16 where the CPU computes it
    assert np.abs(default_scores - mean_scores).max() < 1e-2
    assert ids == [r.id for r in val.records] and mean_scores.shape == (8, 10)
    assert (max_scores >= mean_scores - 1e-6).all() and ((mean_scores > 0) & (mean_scores < 1)).all()
    # the mean over clips equals the mean of single-clip predictions of the same clips
    multi = TinyVirat(synthetic_root, "val", clip_len=4, size=24, num_clips=3)
    clips = torch.stack([multi[i][0] for i in range(2)])
    from tinyaction.data import normalize_clip
    with torch.no_grad():
        expected = torch.sigmoid(model.eval()(normalize_clip(clips.flatten(0, 1)))).unflatten(0, (2, 3)).mean(1)
    assert np.allclose(mean_scores[:2], expected.numpy(), atol=1e-5)
