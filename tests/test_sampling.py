"sample_indices: properties of each mode, short videos (the released test split's included), determinism."
import numpy as np
import pytest

from tinyaction.data import SAMPLING_MODES, load_split, sample_indices


@pytest.mark.parametrize("num_frames", [16, 17, 64, 150])
def test_random_mode_draws_distinct_sorted_frames(num_frames):
    rng = np.random.default_rng(0)
    for _ in range(50):
        (clip,) = sample_indices(num_frames, 16, "random", rng=rng)
        assert len(set(clip)) == 16 and (np.diff(clip) > 0).all() and clip.max() < num_frames


def test_random_mode_covers_the_whole_video():
    rng = np.random.default_rng(1)
    seen = np.concatenate([sample_indices(100, 16, "random", rng=rng)[0] for _ in range(200)])
    assert set(seen) == set(range(100))


@pytest.mark.parametrize("num_frames,stride", [(64, 1), (64, 3), (40, 4), (16, 8)])
def test_window_mode_is_contiguous_with_stride_shrunk_to_fit(num_frames, stride):
    rng = np.random.default_rng(2)
    for _ in range(30):
        (clip,) = sample_indices(num_frames, 16, "window", stride=stride, rng=rng)
        steps = set(np.diff(clip))
        assert len(steps) == 1 and steps.pop() <= stride and clip.min() >= 0 and clip.max() < num_frames


@pytest.mark.parametrize("num_frames", [16, 17, 64, 150])
def test_segments_mode_draws_one_frame_per_segment_and_covers_each(num_frames):
    rng = np.random.default_rng(3)
    edges = (np.arange(17) * num_frames) // 16
    draws = np.stack([sample_indices(num_frames, 16, "segments", rng=rng)[0] for _ in range(300)])
    assert ((draws >= edges[:-1]) & (draws < edges[1:])).all() and (np.diff(draws, axis=1) > 0).all()
    for segment in range(16):
        assert set(draws[:, segment]) == set(range(edges[segment], edges[segment + 1]))


def test_uniform_mode_is_deterministic_and_clips_differ():
    clips = sample_indices(75, 16, "uniform", num_clips=5)
    assert clips.shape == (5, 16)
    assert (clips == sample_indices(75, 16, "uniform", num_clips=5, rng=123)).all()
    assert len({tuple(c) for c in clips}) == 5
    assert clips.min() >= 0 and clips.max() < 75


@pytest.mark.parametrize("mode", ["random", "segments", "window", "uniform"])
@pytest.mark.parametrize("num_frames", [1, 5, 15])
def test_short_videos_are_never_dropped(mode, num_frames):
    clips = sample_indices(num_frames, 16, mode, num_clips=3, rng=0)
    assert clips.shape == (3, 16)
    assert clips.min() >= 0 and clips.max() < num_frames
    assert set(clips.ravel()) == set(range(num_frames))


def test_short_policies():
    assert sample_indices(3, 7, "random", short="loop")[0].tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert sample_indices(3, 7, "random", short="pad")[0].tolist() == [0, 1, 2, 2, 2, 2, 2]
    for num_frames in (3, 100):  # a bad policy is reported whether or not this video needs one
        with pytest.raises(ValueError, match="short must be one of"):
            sample_indices(num_frames, 7, short="drop")


@pytest.mark.parametrize("short", ["loop", "pad"])
@pytest.mark.parametrize("mode", SAMPLING_MODES)
def test_the_released_test_splits_6_and_12_frame_clips_get_valid_clips(tinyvirat_annotations, mode, short):
    "TinyVIRAT-v2's public test file has clips of 6 and 12 frames; none may be dropped at clip_len 16."
    records = load_split(tinyvirat_annotations, "test")
    short_clips = sorted({r.frames for r in records if r.frames < 16})
    assert short_clips == [6, 12]
    for record in records:
        clips = sample_indices(record.frames, 16, mode, num_clips=5, short=short, rng=0)
        assert clips.shape == (5, 16) and clips.min() >= 0 and clips.max() < record.frames
        if record.frames < 16:
            assert set(clips.ravel()) == set(range(record.frames)), "every frame of a short clip is used"


def test_seeded_sampling_is_deterministic_and_seeds_differ():
    a = sample_indices(120, 16, "random", num_clips=5, rng=7)
    assert (a == sample_indices(120, 16, "random", num_clips=5, rng=7)).all()
    assert not (a == sample_indices(120, 16, "random", num_clips=5, rng=8)).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_frames"):
        sample_indices(0)
    with pytest.raises(ValueError, match="mode"):
        sample_indices(10, mode="dense")
