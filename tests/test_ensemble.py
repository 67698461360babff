"""Test-time views and ensembles: flip views swap the classes a mirror swaps (left and right turns), so they change nothing
for a network that respects the mirror, an ensemble of one is its checkpoint,
two checkpoints of other input contracts through nbs/04_evaluate.ipynb, and members that disagree on classes or videos"""
import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from tinyaction.checkpoint import load_checkpoint
from tinyaction.config import ConfigError, parse_config
from tinyaction.data import TinyVirat
from tinyaction.evaluate import EvalConfig, evaluate_checkpoint, evaluation_dataset
from tinyaction.inference import mirror_pairs, mirror_permutation, predict
from tinyaction.metrics import align_scores, average_score_files, bootstrap_ci, load_scores, save_scores
from tinyaction.train import fit
from tinyaction.zoo import contract_of, get_model

from conftest import copy_dataset, rewrite_split, run_module, run_papermill, tiny_config


@pytest.fixture(scope="module")
def members(synthetic_root, tmp_path_factory):
    "Two trained checkpoints of other input contracts: 8 frames of 32x32, and 4 frames of 24x24."
    paths = []
    for clip_len, size in ((8, 32), (4, 24)):
        out = tmp_path_factory.mktemp(f"trained_{size}")
        fit(tiny_config(synthetic_root, out, epochs=1, clip_len=clip_len, size=size))
        paths.append(out / "checkpoint_best.pt")
    return paths


CLASSES = ["activity_standing", "activity_walking", "activity_running", "activity_gesturing",
           "activity_carrying", "vehicle_moving", "vehicle_turning_left", "vehicle_turning_right",
           "vehicle_starting", "vehicle_stopping"]  # the synthetic set's class map
SWAP = mirror_permutation(len(CLASSES), mirror_pairs(CLASSES))  # turning left <-> turning right


class Mirrored(nn.Module):
    "`net` on the mirror of its input; with `respectful`, its logits on the input plus those on the mirror, pairs swapped."

    def __init__(self, net: nn.Module, respectful: bool = False):
        super().__init__()
        self.net, self.respectful, self.input_contract = net, respectful, contract_of(net)

    def forward(self, clips):
        mirrored = self.net(clips.flip(-1))
        return mirrored[:, SWAP] + self.net(clips) if self.respectful else mirrored


class MirroredClips(torch.utils.data.Dataset):
    "The items of `dataset` with each clip mirrored."

    def __init__(self, dataset):
        self.dataset, self.classes, self.num_clips = dataset, dataset.classes, dataset.num_clips

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        clip, target, video = self.dataset[i]
        return clip.flip(-1), target, video


@pytest.fixture(scope="module")
def net_and_val(synthetic_root):
    torch.manual_seed(0)
    return get_model("r2plus1d_tiny", num_classes=10).eval(), TinyVirat(synthetic_root, "val", clip_len=4, size=24)


@pytest.mark.parametrize("num_clips", [1, 3])
def test_flip_views_of_a_network_that_respects_the_mirror_change_nothing(net_and_val, num_clips):
    net, val = net_and_val
    assert val.classes == CLASSES
    respectful = Mirrored(net, respectful=True)
    _, plain = predict(respectful, val, num_clips=num_clips, batch_size=3, progress=False)
    _, flipped = predict(respectful, val, num_clips=num_clips, batch_size=3, progress=False, tta="flip")
    np.testing.assert_allclose(flipped, plain, atol=1e-6)


@pytest.mark.parametrize("num_clips", [1, 3])
def test_flip_views_average_the_clips_and_their_left_right_mirrors(net_and_val, num_clips):
    net, val = net_and_val
    common = dict(num_clips=num_clips, batch_size=3, progress=False)
    _, plain = predict(net, val, **common)
    mirrored = predict(Mirrored(net), val, **common)[1][:, SWAP]  # the mirror's scores, left and right swapped back
    _, flipped = predict(net, val, tta="flip", **common)
    assert np.abs(mirrored - plain).max() > 1e-4  # the network does tell a clip from its mirror
    np.testing.assert_allclose(flipped, (plain + mirrored) / 2, atol=1e-6)
    _, flipped_max = predict(net, val, tta="flip", reduce="max", **common)
    np.testing.assert_allclose(flipped_max, np.maximum(predict(net, val, reduce="max", **common)[1],
                                                       predict(Mirrored(net), val, reduce="max", **common)[1][:, SWAP]),
                               atol=1e-6)
    with pytest.raises(ValueError, match="tta must be one of \\['none', 'flip'\\], got 'vflip'"):
        predict(net, val, tta="vflip")


@pytest.mark.parametrize("num_clips", [1, 3])
def test_flip_views_of_a_mirrored_clip_are_the_clips_with_left_and_right_swapped(members, num_clips):
    # the mirror test of issue "A mirror turns left into right", on a trained network: flip TTA of mirror(X) = P(flip TTA of X)
    model, checkpoint = load_checkpoint(members[0])
    dataset = evaluation_dataset(checkpoint, None, "val")
    dataset.num_clips = num_clips
    common = dict(num_clips=num_clips, batch_size=3, progress=False, tta="flip", amp=False)
    _, scores = predict(model, dataset, **common)
    _, of_mirrors = predict(model, MirroredClips(dataset), **common)
    assert checkpoint.config["flip_pairs"] == "vehicle_turning_left:vehicle_turning_right"
    np.testing.assert_allclose(of_mirrors, scores[:, SWAP], atol=1e-5)
    assert np.abs(scores[:, 6] - scores[:, 7]).max() > 1e-3  # the trained network tells the two turns apart


def test_an_ensemble_of_one_is_its_checkpoint(members, tmp_path):
    common = dict(split="val", num_clips=2, batch_size=4, num_workers=0, device="cpu")
    single = evaluate_checkpoint(EvalConfig(members[0], out_dir=tmp_path / "single", **common))
    one = evaluate_checkpoint(EvalConfig([members[0]], out_dir=tmp_path / "one", **common))
    assert one.ids == single.ids and np.array_equal(one.scores, single.scores)
    assert one.table == single.table and one.threshold_gain == single.threshold_gain
    assert (tmp_path / "one/thresholds.json").read_text() == (tmp_path / "single/thresholds.json").read_text()
    assert (single.epoch, one.epoch) == (0, [0])
    saved = json.loads((tmp_path / "single/metrics.json").read_text())
    assert {"many_shot_f1", "medium_shot_f1", "few_shot_f1"} <= set(saved), "shot groups from the training split's counts"
    assert "shot F1" in single.table1()


@pytest.mark.slow
def test_two_checkpoints_of_other_input_contracts_through_the_notebook(synthetic_root, members, tmp_path):
    assert [(d.clip_len, d.size) for d in (evaluation_dataset(load_checkpoint(p)[1], None, "val") for p in members)] == [
        (8, 32), (4, 24)]
    result = run_papermill("04_evaluate.ipynb", tmp_path / "ensemble.ipynb", ("checkpoint", f"{members[0]},{members[1]}"),
                           ("split", "val"), ("num_clips", 2), ("tta", "flip"), ("out_dir", tmp_path / "ensemble"),
                           ("batch_size", 4), ("num_workers", 0))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "ensemble/metrics.json").read_text())
    assert metrics["checkpoint"] == [str(p) for p in members] == metrics["config"]["checkpoint"]
    assert metrics["epoch"] == [0, 0] and metrics["config"]["tta"] == "flip" and metrics["videos"] == 8
    assert metrics["scores"] == "mean of sigmoids over 2 clips x 2 views (tta 'flip') x 2 checkpoints"
    ensemble = load_scores(tmp_path / "ensemble/scores.npz")

    alone = []
    for i, path in enumerate(members):
        evaluate_checkpoint(EvalConfig(path, split="val", num_clips=2, tta="flip", out_dir=tmp_path / f"alone{i}",
                                       batch_size=4, num_workers=0))
        alone.append(tmp_path / f"alone{i}/scores.npz")
    mean = (load_scores(alone[0])["scores"] + load_scores(alone[1])["scores"]) / 2
    np.testing.assert_allclose(ensemble["scores"], mean, atol=1e-7)
    np.testing.assert_allclose(average_score_files(alone)["scores"], ensemble["scores"], atol=1e-7)

    for name in ("macro_f1", "macro_precision", "macro_recall"):  # intervals that hold the estimate, from the saved scores
        low, high = metrics[f"{name}_ci"]
        assert low <= metrics[name] <= high and metrics["single_clip"][f"{name}_ci"][0] <= metrics["single_clip"][name]
    assert metrics["macro_f1_ci"] == bootstrap_ci(ensemble["targets"], ensemble["scores"], ensemble["thresholds"])["macro_f1_ci"]
    assert set(metrics["threshold_gain_ci"]) == set(metrics["threshold_gain"])
    executed = (tmp_path / "ensemble.ipynb").read_text()
    assert "95% bootstrap CI" in executed and re.search(r"2  \d\.\d{4} \[\d\.\d{4}, \d\.\d{4}\]", executed)

    run_module("tinyaction.evaluate", "--checkpoint", f"{members[0]},{members[1]}", "--split", "val", "--num_clips", "2",
               "--tta", "flip", "--out_dir", str(tmp_path / "cli"), "--batch_size", "4", "--num_workers", "0")
    np.testing.assert_array_equal(load_scores(tmp_path / "cli/scores.npz")["scores"], ensemble["scores"])


def pointed_at(checkpoint, root, path, **changes):
    "A copy of `checkpoint` as if trained on the dataset at `root`: evaluated with data_dir=None, it reads that one."
    state = torch.load(checkpoint, weights_only=True)
    torch.save({**state, "config": {**state["config"], "data_dir": str(root)}, **changes}, path)
    return path


def test_a_class_map_in_another_order_is_reordered(synthetic_root, members, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path / "reordered")
    class_map = json.loads((root / "class_map.json").read_text())
    (root / "class_map.json").write_text(json.dumps({name: len(class_map) - 1 - i for name, i in class_map.items()}))
    other = pointed_at(members[0], root, tmp_path / "other.pt")
    common = dict(split="val", num_clips=2, batch_size=4, num_workers=0, device="cpu")
    plain = evaluate_checkpoint(EvalConfig([members[1], members[0]], out_dir=tmp_path / "plain", **common))
    both = evaluate_checkpoint(EvalConfig([members[1], other], out_dir=tmp_path / "both", **common))
    assert both.classes == plain.classes and evaluate_checkpoint(
        EvalConfig(other, out_dir=tmp_path / "other", **common)).classes == plain.classes[::-1]
    np.testing.assert_allclose(both.scores, plain.scores, atol=1e-7)


def test_a_copy_of_a_member_is_refused_as_a_second_member(members, tmp_path):
    copy = tmp_path / "copy.pt"
    copy.write_bytes(open(members[0], "rb").read())
    with pytest.raises(ValueError, match=f"{members[0]} and {copy} hold the same weights"):
        evaluate_checkpoint(EvalConfig([members[0], copy], split="val", out_dir=tmp_path / "eval", num_workers=0))
    assert not (tmp_path / "eval").exists()


def test_members_over_other_classes_are_refused_naming_both(synthetic_root, members, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path / "renamed")
    class_map = json.loads((root / "class_map.json").read_text())
    (root / "class_map.json").write_text(json.dumps({f"{name}_v2": i for name, i in class_map.items()}))
    rewrite_split(root, "val", lambda records: [r.update(label=[f"{n}_v2" for n in r["label"]]) for r in records])
    state = torch.load(members[0], weights_only=True)
    renamed = pointed_at(members[1], root, tmp_path / "renamed.pt", classes=[f"{c}_v2" for c in state["classes"]])
    with pytest.raises(ValueError, match=f"{renamed} scores the classes .*_v2.*, but {members[0]} scores .*: runs over other"):
        evaluate_checkpoint(EvalConfig([members[0], renamed], split="val", out_dir=tmp_path / "eval", num_workers=0))
    assert not (tmp_path / "eval").exists()  # refused before any network ran

    scores = np.random.default_rng(0).random((2, 2))
    save_scores(tmp_path / "a.npz", ["1", "2"], scores, ["walk", "run"])
    save_scores(tmp_path / "b.npz", ["1", "2"], scores, ["walk", "jump"])
    with pytest.raises(ValueError, match=r"b.npz scores the classes \['walk', 'jump'\], but .*a.npz scores \['walk', 'run'\]"):
        average_score_files([tmp_path / "a.npz", tmp_path / "b.npz"])


def test_members_with_other_videos_are_refused_naming_the_videos(synthetic_root, members, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path / "fewer")
    dropped = []
    rewrite_split(root, "val", lambda records: dropped.append(records.pop(0)["id"]))
    fewer = pointed_at(members[1], root, tmp_path / "fewer.pt")
    with pytest.raises(ValueError, match=re.escape(f"{fewer} and {members[0]} scored other videos: {fewer} lacks {dropped}")):
        evaluate_checkpoint(EvalConfig([members[0], fewer], split="val", out_dir=tmp_path / "eval", num_workers=0))

    ids = [f"{i:05d}" for i in range(30)]
    scores = np.random.default_rng(0).random((30, 3))
    save_scores(tmp_path / "all.npz", ids, scores, list("abc"))
    save_scores(tmp_path / "some.npz", ids[12:] + ["99999"], scores[12:].tolist() + [[0, 0, 0]], list("abc"))
    with pytest.raises(ValueError, match=re.escape(f"some.npz lacks {ids[:10]} ... (12 in all) and has ['99999'] that")):
        average_score_files([tmp_path / "all.npz", tmp_path / "some.npz"])


def test_members_that_disagree_on_labels_are_refused():
    run = {"ids": ["1", "2", "3"], "scores": np.zeros((3, 2)), "classes": ["a", "b"], "targets": np.eye(3, 2)}
    relabelled = {**run, "targets": np.eye(3, 2)[[0, 2, 1]]}
    with pytest.raises(ValueError, match=r"second and first give different labels to the videos \['2', '3'\]"):
        align_scores([run, relabelled], ["first", "second"])


def test_checkpoint_lists_and_views_are_parsed_strictly():
    parse = lambda *argv: parse_config(EvalConfig, list(argv), "evaluate")  # noqa: E731
    assert parse("--checkpoint", "a.pt,b.pt").checkpoint == ["a.pt", "b.pt"]
    assert parse("--checkpoint", "a.pt").checkpoint == "a.pt" and parse("--tta", "flip").tta == "flip"
    for bad in ("a.pt,", ",b.pt", "a.pt,,b.pt"):
        with pytest.raises(ConfigError, match=f"parameter 'checkpoint': got {bad!r}; expected a path, a list of paths"):
            parse("--checkpoint", bad)
    with pytest.raises(ConfigError, match="parameter 'checkpoint': got \\[3\\]"):
        EvalConfig([3])
    with pytest.raises(ConfigError, match="parameter 'tta': got 'mirror'; expected one of \\['none', 'flip'\\]"):
        parse("--tta", "mirror")


def test_an_ensemble_member_that_does_not_fit_the_dataset_is_named_by_its_path(members, tmp_path):
    # before: "... the checkpoint does not fit this dataset" without saying which of the members
    state = torch.load(members[1], weights_only=True)
    other = tmp_path / "other_classes.pt"
    torch.save({**state, "classes": [f"{c}_v2" for c in state["classes"]]}, other)
    with pytest.raises(ValueError, match=f"^{re.escape(str(other))}: .*the checkpoint does not fit this dataset"):
        evaluate_checkpoint(EvalConfig([members[0], other], split="val", out_dir=tmp_path / "eval", num_workers=0))


def test_the_same_checkpoint_twice_in_an_ensemble_is_refused(members):
    with pytest.raises(ConfigError, match="distinct checkpoints; .* given twice would weigh double"):
        EvalConfig([members[0], members[1], members[0]])
