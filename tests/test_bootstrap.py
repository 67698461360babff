"""Bootstrap intervals over videos: every resample scored as scikit-learn scores its videos, intervals that hold the estimate
and narrow with more videos, and paired comparisons of two scores.npz files"""
import re

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from tinyaction.metrics import (
    bootstrap_ci,
    compare_score_files,
    load_scores,
    multilabel_metrics,
    paired_bootstrap,
    resample_counts,
    resampled_macro,
    save_scores,
    seed_bootstrap,
)

from conftest import write_sample_scores

METRICS = ("macro_f1", "macro_precision", "macro_recall")


def labelled_case(n: int, classes: int = 26, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    "n videos with classes from common (30%) to rare (0.3%), and scores that lean towards the truth."
    rng = np.random.default_rng(seed)
    y_true = rng.random((n, classes)) < np.geomspace(0.3, 0.003, classes)
    return y_true.astype(int), np.clip(0.3 * y_true + rng.random((n, classes)) * 0.7, 0, 1)


def test_each_resample_is_scored_as_scikit_learn_scores_its_videos():
    y_true, y_score = labelled_case(300, seed=1)
    threshold = np.random.default_rng(2).uniform(0.4, 0.6, 26)
    counts = resample_counts(300, n_resamples=20, seed=4)
    assert counts.shape == (20, 300) and (counts.sum(1) == 300).all()
    resampled = resampled_macro(y_true, y_score, threshold, counts)
    absent = 0
    for r in range(20):
        drawn = np.repeat(np.arange(300), counts[r])
        absent += (y_true[drawn].sum(0) == 0).sum()
        p, rc, f, _ = precision_recall_fscore_support(y_true[drawn], y_score[drawn] >= threshold, average="macro",
                                                      zero_division=0)
        np.testing.assert_allclose([resampled[k][r] for k in METRICS], [f, p, rc])
    assert absent > 0  # some resamples leave a rare class without positives: F1 0, still in the mean


def test_the_interval_holds_the_estimate_and_narrows_with_more_videos():
    widths = {}
    for n in (250, 4000):
        y_true, y_score = labelled_case(n)
        point, ci = multilabel_metrics(y_true, y_score), bootstrap_ci(y_true, y_score)
        for k in METRICS:
            low, high = ci[f"{k}_ci"]
            assert low <= point[k] <= high
        widths[n] = np.diff(ci["macro_f1_ci"])[0]
    assert widths[4000] < widths[250] / 2  # about 1/sqrt(16) = 1/4 as wide
    y_true, y_score = labelled_case(250)
    assert bootstrap_ci(y_true, y_score, seed=5) == bootstrap_ci(y_true, y_score, seed=5)
    assert bootstrap_ci(y_true, y_score, confidence=0.5)["macro_f1_ci"][1] < bootstrap_ci(y_true, y_score)["macro_f1_ci"][1]


def test_bad_bootstrap_parameters_are_refused():
    y_true, y_score = labelled_case(20)
    with pytest.raises(ValueError, match="confidence must be in \\(0, 1\\), got 95"):
        bootstrap_ci(y_true, y_score, confidence=95)
    with pytest.raises(ValueError, match="at least one video and one resample, got 20 videos, 0 resamples"):
        bootstrap_ci(y_true, y_score, n_resamples=0)


def test_a_scores_file_compared_with_itself_differs_by_zero(tmp_path):
    path = write_sample_scores(tmp_path / "scores.npz")
    result = compare_score_files(path, path)
    assert (result["difference"], result["difference_ci"], result["sign_flip"]) == (0.0, [0.0, 0.0], 0.0)
    run = load_scores(path)
    shuffled = save_scores(tmp_path / "shuffled.npz", run["ids"][::-1], run["scores"][::-1, ::-1], run["classes"][::-1],
                           run["targets"][::-1, ::-1], run["thresholds"][::-1])
    assert compare_score_files(path, shuffled) == result


def test_a_real_gain_is_found_and_pairing_narrows_the_interval(tmp_path):
    y_true, y_score = labelled_case(2000)
    ids = [f"{i:05d}" for i in range(2000)]
    classes = [f"class_{c}" for c in range(26)]
    a = save_scores(tmp_path / "a.npz", ids, y_score, classes, y_true)
    b = save_scores(tmp_path / "b.npz", ids, np.clip(y_score + 0.05 * y_true, 0, 1), classes, y_true)
    result = compare_score_files(a, b)
    assert result["macro_f1_b"] - result["macro_f1_a"] == result["difference"] > 0
    assert 0 < result["difference_ci"][0] <= result["difference"] <= result["difference_ci"][1] and result["sign_flip"] < 0.01
    alone = bootstrap_ci(y_true, y_score)["macro_f1_ci"]
    assert np.diff(result["difference_ci"])[0] < np.diff(alone)[0] / 2  # what both runs share cancels
    reversed_ = compare_score_files(b, a)
    assert reversed_["difference"] == -result["difference"] and reversed_["sign_flip"] == result["sign_flip"]


def test_noise_gives_sign_flips():
    y_true, y_score = labelled_case(300, seed=3)
    run = {"ids": [str(i) for i in range(300)], "scores": y_score, "classes": [str(c) for c in range(26)],
           "thresholds": np.full(26, 0.5), "targets": y_true}
    noisy = {**run, "scores": np.clip(y_score + np.random.default_rng(9).normal(0, 0.03, y_score.shape), 0, 1)}
    result = paired_bootstrap(run, noisy)
    assert result["difference_ci"][0] < 0 < result["difference_ci"][1] and result["sign_flip"] > 0.05


def test_paired_runs_need_the_same_videos_and_labels(tmp_path):
    path = write_sample_scores(tmp_path / "scores.npz")
    run = load_scores(path)
    fewer = save_scores(tmp_path / "fewer.npz", run["ids"][1:], run["scores"][1:], run["classes"], run["targets"][1:])
    with pytest.raises(ValueError, match=re.escape(f"{fewer} and {path} scored other videos: {fewer} lacks {run['ids'][:1]}")):
        compare_score_files(path, fewer)
    blind = save_scores(tmp_path / "blind.npz", run["ids"], run["scores"], run["classes"])
    with pytest.raises(ValueError, match="blind.npz has no labels"):
        compare_score_files(path, blind)


def recipe_runs(first_seed: int, gain: float = 0.0, n: int = 2000, seeds: int = 3) -> list[dict]:
    "Runs of one recipe on the same videos: each seed sees its own noise and its own share of the evidence (its luck)."
    truth = np.random.default_rng(99).random((n, 4)) < 0.3
    runs = []
    for s in range(first_seed, first_seed + seeds):
        rng = np.random.default_rng(s)
        scores = np.clip(truth * (0.3 + gain + rng.normal(0, 0.05)) + rng.random((n, 4)) * 0.6, 0, 1)
        runs.append({"ids": [str(i) for i in range(n)], "scores": scores, "classes": list("abcd"),
                     "thresholds": np.full(4, 0.5), "targets": truth.astype(np.uint8)})
    return runs


def test_the_two_level_bootstrap_covers_0_for_one_recipe_and_not_for_a_real_gain():
    same_a, same_b, better = recipe_runs(0), recipe_runs(10), recipe_runs(10, gain=0.12)
    one_pair = paired_bootstrap(same_a[1], same_a[2], n_resamples=500)
    assert one_pair["difference_ci"][1] < 0  # a videos-only interval reads one seed's luck as a difference
    same = seed_bootstrap(same_a, same_b, n_resamples=500)
    assert same["difference_ci"][0] <= 0 <= same["difference_ci"][1]
    real = seed_bootstrap(same_a, better, n_resamples=500)
    assert 0 < real["difference_ci"][0] <= real["difference"] <= real["difference_ci"][1] and real["sign_flip"] < 0.05
    assert (same["seeds_a"], same["seeds_b"], same["videos"]) == (3, 3, 2000)
