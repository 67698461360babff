"Long-tailed data: the synthetic long tail, class counts and shot groups, repeat factors, and the repeat-factor sampler."
import json
import math
from collections import Counter

import numpy as np
import pytest
from torch.utils.data import DistributedSampler

from tinyaction.balance import (
    RepeatedClips,
    RepeatFactorSampler,
    class_counts,
    label_matrix,
    repeat_factors,
    shot_groups,
)
from tinyaction.data import TinyVirat, load_class_map, load_split
from tinyaction.synthetic import LONG_TAIL_ORDER, make_synthetic

from conftest import SAMPLE_ROOT


@pytest.fixture(scope="module")
def long_tail_root(tmp_path_factory):
    "A synthetic set whose train split has the long tail of imbalance=100."
    return make_synthetic(tmp_path_factory.mktemp("long_tail"), n_train=700, n_val=60, n_test=0, seed=2, imbalance=100,
                          workers=2)


@pytest.mark.slow
def test_imbalance_100_gives_a_max_min_ratio_near_100(long_tail_root):
    counts = Counter(label for r in load_split(long_tail_root, "train") for label in r.labels)
    assert set(counts) == set(LONG_TAIL_ORDER)
    assert 80 <= max(counts.values()) / min(counts.values()) <= 125, counts
    assert [counts[name] for name in LONG_TAIL_ORDER] == sorted(counts.values(), reverse=True)
    assert counts["activity_walking"] == max(counts.values()) and min(counts.values()) >= 2
    val = Counter(label for r in load_split(long_tail_root, "val") for label in r.labels)
    assert set(val) == set(LONG_TAIL_ORDER), "every class still appears in val"
    stamp = json.loads((long_tail_root / ".synthetic.json").read_text())
    assert stamp["imbalance"] == 100


def test_the_stamp_makes_a_dataset_of_another_imbalance_again(tmp_path):
    root = make_synthetic(tmp_path / "s", n_train=6, n_val=2, n_test=0, seed=1, imbalance=5, workers=1)
    long_tailed = (root / "tiny_train_v2.json").read_text()
    make_synthetic(root, n_train=6, n_val=2, n_test=0, seed=1, workers=1)
    assert "imbalance" not in json.loads((root / ".synthetic.json").read_text())
    natural = make_synthetic(tmp_path / "natural", n_train=6, n_val=2, n_test=0, seed=1, workers=1)
    assert (root / "tiny_train_v2.json").read_text() == (natural / "tiny_train_v2.json").read_text() != long_tailed
    assert (root / "tiny_val_v2.json").read_text() == (natural / "tiny_val_v2.json").read_text()  # val keeps its frequencies
    with pytest.raises(ValueError, match="imbalance must be a number >= 1"):
        make_synthetic(tmp_path / "bad", imbalance=0.5)


def test_class_counts_and_shot_groups_on_the_sample():
    classes = load_class_map(SAMPLE_ROOT)
    records = load_split(SAMPLE_ROOT, "train")
    by_hand = Counter(label for r in records for label in r.labels)
    assert class_counts(records, classes).tolist() == [by_hand[c] for c in classes]
    assert shot_groups(class_counts(records, classes)) == {"many": [], "medium": [], "few": list(range(len(classes)))}
    counts = [150, 101, 100, 20, 19, 0]
    assert shot_groups(counts) == {"many": [0, 1], "medium": [2, 3], "few": [4, 5]}
    assert shot_groups(counts, many=10, few=1) == {"many": [0, 1, 2, 3, 4], "medium": [], "few": [5]}


def test_repeat_factors_are_lvis_formula_computed_by_hand(long_tail_root):
    records = load_split(long_tail_root, "train")
    classes = load_class_map(long_tail_root)
    threshold = 0.1
    # by hand: f_c = clips with c / clips; r_c = max(1, sqrt(t / f_c)); a clip takes the largest r_c of its labels
    f = {c: sum(c in r.labels for r in records) / len(records) for c in classes}
    r_class = {c: max(1.0, math.sqrt(threshold / f[c])) for c in classes}
    r_clip = [max((r_class[c] for c in r.labels), default=1.0) for r in records]
    class_factors, clip_factors = repeat_factors(label_matrix(records, classes), threshold)
    np.testing.assert_allclose(class_factors, [r_class[c] for c in classes])
    np.testing.assert_allclose(clip_factors, r_clip)
    rarest = classes.index(LONG_TAIL_ORDER[-1])
    assert class_factors[rarest] > 3 and class_factors[classes.index(LONG_TAIL_ORDER[0])] == 1
    # three clips, two classes, t = 0.5: f = (2/3, 1/3), r = (1, sqrt(1.5)); the unlabelled clip keeps 1
    _, clips = repeat_factors(np.array([[1, 0], [1, 1], [0, 0]]), 0.5)
    np.testing.assert_allclose(clips, [1, math.sqrt(1.5), 1])


def sampled(dataset, factors, epoch, world=1, rank=0, seed=0):
    sampler = RepeatFactorSampler(dataset, factors, num_replicas=world, rank=rank, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_the_sampler_with_unit_factors_is_distributed_sampler():
    dataset = TinyVirat(SAMPLE_ROOT, "train", clip_len=4, size=16)
    for world, rank, epoch in ((1, 0, 0), (1, 0, 3), (2, 1, 1), (3, 2, 2)):
        plain = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=5, drop_last=True)
        plain.set_epoch(epoch)
        assert sampled(dataset, np.ones(len(dataset)), epoch, world, rank, seed=5) == list(plain)


def test_the_sampler_is_a_pure_function_of_seed_and_epoch_shared_by_the_ranks(long_tail_root):
    dataset = TinyVirat(long_tail_root, "train", clip_len=4, size=16)
    factors = repeat_factors(label_matrix(dataset.records, dataset.classes), 0.1)[1]
    one = sampled(dataset, factors, epoch=4)
    assert len(one) == len(dataset) and one == sampled(dataset, factors, epoch=4)
    assert one != sampled(dataset, factors, epoch=5) and one != sampled(dataset, factors, epoch=4, seed=1)
    two = [sampled(dataset, factors, 4, world=2, rank=r) for r in (0, 1)]
    assert [i for pair in zip(*two) for i in pair] == one
    # over many epochs each clip comes in proportion to its factor; copy k of clip i is i + k * n
    n = len(dataset)
    draws = np.concatenate([np.array(sampled(dataset, factors, e)) for e in range(300)])
    shown = np.bincount(draws % n, minlength=n) / 300
    expected = factors / factors.sum() * n
    rare, common = factors > 2, factors == 1
    assert abs(shown[rare].mean() / expected[rare].mean() - 1) < 0.05
    assert abs(shown[common].mean() / expected[common].mean() - 1) < 0.05
    assert draws.max() >= n and (draws // n).max() <= np.ceil(factors.max())


def test_the_sampler_refuses_factors_below_one():
    dataset = TinyVirat(SAMPLE_ROOT, "train", clip_len=4, size=16)
    with pytest.raises(ValueError, match="one repeat factor >= 1 per clip"):
        RepeatFactorSampler(dataset, np.full(len(dataset), 0.5))
    with pytest.raises(ValueError, match="one repeat factor >= 1 per clip"):
        RepeatFactorSampler(dataset, np.ones(3))


def test_copies_of_a_clip_get_their_own_frames_deterministically():
    dataset = TinyVirat(SAMPLE_ROOT, "train", clip_len=4, size=16, seed=3)
    dataset.set_epoch(2)
    repeated, n = RepeatedClips(dataset), len(dataset)
    first, second, third = repeated[4], repeated[4 + n], repeated[4 + 2 * n]
    assert np.array_equal(first[0], dataset[4][0]) and first[2] == second[2] == third[2]
    assert not np.array_equal(first[0], second[0]) and not np.array_equal(second[0], third[0])
    assert np.array_equal(second[0], RepeatedClips(dataset)[4 + n][0])
    assert dataset.seed == 3
