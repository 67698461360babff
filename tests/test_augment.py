"""Training augmentation (nbs/02h_augment.ipynb): a flipped left turn is trained as a right turn, every clip's draws are a
function of (seed, epoch, video), and a run with every augmentation resumes bit for bit."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from tinyaction.augment import Augmenter
from tinyaction.checkpoint import read_checkpoint
from tinyaction.config import ConfigError
from tinyaction.data import TinyVirat, collate_clips
from tinyaction.inference import mirror_pairs, mirror_permutation
from tinyaction.train import fit

from conftest import tiny_config


def test_a_flipped_left_turn_is_a_right_turn(synthetic_root):
    val = TinyVirat(synthetic_root, "val", clip_len=4, size=16)
    clips, targets, ids = collate_clips([val[i] for i in range(len(val))])
    left, right = val.classes.index("vehicle_turning_left"), val.classes.index("vehicle_turning_right")
    targets[:, left], targets[:, right] = 1, 0
    flipped, flipped_targets = Augmenter(["flip"], mirror_permutation(len(val.classes), mirror_pairs(val.classes)))(
        clips, targets, ids, epoch=0)
    mirrored = [b for b in range(len(ids)) if not torch.equal(flipped[b], clips[b].float())]
    assert 0 < len(mirrored) < len(ids)  # about half
    for b in range(len(ids)):
        assert flipped_targets[b, right] == (b in mirrored) and flipped_targets[b, left] == (b not in mirrored)


def test_every_augmentation_trains_and_resumes_bit_for_bit(synthetic_root, tmp_path):
    straight = tiny_config(synthetic_root, tmp_path / "straight", epochs=2, amp=False, augment="flip,scale,time,mixup")
    interrupted = replace(straight, out_dir=str(tmp_path / "interrupted"))
    final = fit(straight)
    fit(interrupted, stop_after_epochs=1)
    fit(replace(interrupted, resume="auto"))
    a, b = (read_checkpoint(tmp_path / name / "checkpoint_last.pt").model for name in ("straight", "interrupted"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert np.isfinite(final["macro_f1"])
    plain = fit(tiny_config(synthetic_root, tmp_path / "plain", epochs=1, amp=False))
    augmented = read_checkpoint(tmp_path / "straight" / "checkpoint_last.pt")
    assert augmented.config["augment"] == "flip,scale,time,mixup" and plain["macro_f1"] >= 0


def test_label_changing_augmentation_with_a_scores_teacher_is_refused(synthetic_root, tmp_path):
    with pytest.raises(ConfigError, match="parameter 'augment': got 'flip,time'; expected no \\['flip'\\] with a scores teacher"):
        tiny_config(synthetic_root, tmp_path / "t", augment="time,flip", teacher=str(tmp_path / "scores.npz"))
    assert tiny_config(synthetic_root, tmp_path / "t", augment="time", teacher=str(tmp_path / "scores.npz")).augment == "time"
