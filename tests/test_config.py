"""One definition of a run's parameters: every field of TrainConfig and EvalConfig is a papermill parameter and a
command-line option, and its value reaches config.json"""
import ast
import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from tinyaction.checkpoint import Checkpoint
from tinyaction.config import ConfigError, field_types, parse_config
from tinyaction.data import load_class_map
from tinyaction.evaluate import EvalConfig
from tinyaction.metrics import save_thresholds
from tinyaction.models import r2plus1d_18, r2plus1d_tiny
from tinyaction.train import TrainConfig

from conftest import REPO_ROOT, run_module, run_papermill, write_sample_scores


def parameters_cell(notebook: str) -> dict:
    "Names and literal values of the notebook's cell tagged `parameters`, in order."
    cells = json.loads((REPO_ROOT / "nbs" / notebook).read_text())["cells"]
    (cell,) = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    tree = ast.parse("".join(cell["source"]))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body}


@pytest.mark.parametrize("notebook, config", [("03_train.ipynb", TrainConfig), ("04_evaluate.ipynb", EvalConfig)])
def test_the_parameters_cell_is_the_config(notebook, config):
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    assert parameters_cell(notebook) == defaults


def non_default_training(root, out, weights, teacher) -> dict[str, tuple[str, object]]:
    "For every TrainConfig field: (the text a user types, the value config.json must then hold), none a default."
    return {
        "data_dir": (str(root), str(root)), "out_dir": (str(out), str(out)), "arch": ("r2plus1d_18", "r2plus1d_18"),
        "pretrained": (str(weights), str(weights)), "clip_len": ("4", 4), "size": ("16", 16), "epochs": ("1", 1),
        "batch_size": ("4", 4), "lr": ("0.0005", 5e-4), "weight_decay": ("0.01", 0.01), "loss": ("asl", "asl"),
        "gamma_neg": ("3", 3.0), "gamma_pos": ("0.5", 0.5), "margin": ("0.1", 0.1), "num_workers": ("1", 1),
        "device": ("cpu", "cpu"), "amp": ("false", False), "seed": ("7", 7), "resume": ("auto", "auto"),
        "warmup_epochs": ("0.5", 0.5), "grad_clip": ("2", 2.0), "sampling": ("random", "random"),
        "val_clips": ("2", 2), "val_sampling": ("segments", "segments"), "skip_errors": ("yes", True),
        "cache": ("no", False), "freeze_bn": ("True", True), "sync_bn": ("0", False), "channels_last": ("off", False),
        "cudnn_benchmark": ("False", False), "torch_compile": ("on", True), "overwrite": ("yes", True),
        "focal_alpha": ("0.5", 0.5), "focal_gamma": ("1", 1.0), "db_alpha": ("0.2", 0.2), "db_beta": ("5", 5.0),
        "db_mu": ("0.3", 0.3), "db_kappa": ("0.1", 0.1), "db_neg_scale": ("3", 3.0),
        "balance": ("repeat_factor", "repeat_factor"), "repeat_threshold": ("0.5", 0.5), "many_shot": ("8", 8),
        "few_shot": ("2", 2), "teacher": (str(teacher), str(teacher)),
        "flip_pairs": ("none", "none"), "augment": ("time,scale", "scale,time"),
        "distill_weight": ("0.5", 0.5), "distill_temperature": ("2", 2.0),
    }


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "r2plus1d_18.pt"
    torch.save(r2plus1d_18(num_classes=10).state_dict(), path)
    return path


@pytest.fixture
def teacher(synthetic_root, tmp_path):
    "A distillation teacher: scores of the training split."
    return write_sample_scores(tmp_path / "teacher.npz", "train", root=synthetic_root)


def assert_run_used(out, values):
    "config.json and the checkpoint of the run in `out` hold every value the user gave."
    saved = json.loads((out / "config.json").read_text())
    assert set(saved) == set(field_types(TrainConfig))
    wrong = {name: (saved[name], expected) for name, (_, expected) in values.items() if saved[name] != expected}
    assert not wrong, wrong
    checkpoint = torch.load(out / "checkpoint_last.pt", weights_only=True)
    assert checkpoint["config"] == saved
    r2plus1d_18(num_classes=10).load_state_dict(checkpoint["model"])  # a compiled run saves eager weights


@pytest.mark.slow
def test_every_training_field_is_a_command_line_option(synthetic_root, tmp_path, weights, teacher):
    values = non_default_training(synthetic_root, tmp_path / "cli", weights, teacher)
    assert set(values) == set(field_types(TrainConfig)), "a new field needs a value here"
    assert all(getattr(TrainConfig(), name) != value for name, (_, value) in values.items())
    run_module("tinyaction.train", *[arg for name, (text, _) in values.items() for arg in (f"--{name}", text)])
    assert_run_used(tmp_path / "cli", values)


@pytest.mark.slow
def test_every_training_field_is_a_papermill_parameter(synthetic_root, tmp_path, weights, teacher):
    values = non_default_training(synthetic_root, tmp_path / "pm", weights, teacher)
    result = run_papermill("03_train.ipynb", tmp_path / "out.ipynb", *[(name, text) for name, (text, _) in values.items()])
    assert result.returncode == 0, result.stderr[-3000:]
    assert_run_used(tmp_path / "pm", values)


@pytest.fixture
def trained(synthetic_root, tmp_path):
    "An untrained tiny network saved as a training checkpoint of the synthetic dataset, and val thresholds for it."
    classes = load_class_map(synthetic_root)
    config = {"arch": "r2plus1d_tiny", "clip_len": 4, "size": 16, "seed": 0, "data_dir": str(synthetic_root),
              "sampling": "segments", "channels_last": True}
    path = Checkpoint(r2plus1d_tiny(num_classes=len(classes)).state_dict(), config, classes, 0).save(tmp_path / "ck.pt")
    return path, save_thresholds(tmp_path / "thresholds.json", [0.4] * len(classes), classes)


def non_default_evaluation(root, trained, out) -> dict[str, tuple[str, object]]:
    "For every EvalConfig field: (the text a user types, the value metrics.json must then record), none a default."
    checkpoint, thresholds = (str(p) for p in trained)
    annotations = str(root / "tiny_test_v2_public.json")
    return {"checkpoint": (checkpoint, checkpoint), "data_dir": (str(root), str(root)), "split": ("test", "test"),
            "annotations": (annotations, annotations), "num_clips": ("2", 2), "out_dir": (str(out), str(out)),
            "batch_size": ("3", 3), "device": ("cpu", "cpu"), "thresholds": (thresholds, thresholds),
            "num_workers": ("1", 1), "tta": ("flip", "flip"), "amp": ("false", False)}


def assert_evaluation_used(out, values):
    "metrics.json of the evaluation in `out` records every value the user gave, and the answer file is there."
    saved = json.loads((out / "metrics.json").read_text())["config"]
    assert set(saved) == set(field_types(EvalConfig))
    wrong = {name: (saved[name], expected) for name, (_, expected) in values.items() if saved[name] != expected}
    assert not wrong, wrong
    assert (out / "answer.txt").is_file()


@pytest.mark.slow
def test_every_evaluation_field_is_an_option_and_a_papermill_parameter(synthetic_root, tmp_path, trained):
    values = non_default_evaluation(synthetic_root, trained, tmp_path / "cli")
    assert set(values) == set(field_types(EvalConfig)), "a new field needs a value here"
    assert all(getattr(EvalConfig(), name) != value for name, (_, value) in values.items())
    run_module("tinyaction.evaluate", *[arg for name, (text, _) in values.items() for arg in (f"--{name}", text)])
    assert_evaluation_used(tmp_path / "cli", values)
    values = non_default_evaluation(synthetic_root, trained, tmp_path / "pm")
    result = run_papermill("04_evaluate.ipynb", tmp_path / "out.ipynb", *[(name, text) for name, (text, _) in values.items()])
    assert result.returncode == 0, result.stderr[-3000:]
    assert_evaluation_used(tmp_path / "pm", values)


@pytest.mark.parametrize("text, value", [("false", False), ("False", False), ("0", False), ("no", False), ("NO", False),
                                         ("true", True), ("1", True), ("yes", True)])
def test_booleans_are_parsed_strictly_on_the_command_line(text, value):
    assert parse_config(TrainConfig, ["--skip_errors", text], "train").skip_errors is value


def test_a_bad_value_names_the_parameter_and_what_is_allowed():
    with pytest.raises(ConfigError, match="parameter 'skip_errors': got 'maybe'; expected a boolean"):
        parse_config(TrainConfig, ["--skip_errors", "maybe"], "train")
    with pytest.raises(ConfigError, match="parameter 'epochs': got 'two'; expected an int"):
        parse_config(TrainConfig, ["--epochs", "two"], "train")
    with pytest.raises(SystemExit):  # argparse: unrecognized arguments
        parse_config(TrainConfig, ["--epoch", "2"], "train")


def test_the_old_name_of_the_margin_still_works_with_a_warning():
    with pytest.warns(FutureWarning, match="'clip' is deprecated; use 'margin'"):
        assert parse_config(TrainConfig, ["--clip", "0.2"], "train").margin == 0.2
    with pytest.raises(ConfigError, match="only one of --clip"):
        parse_config(TrainConfig, ["--clip", "0.2", "--margin", "0.1"], "train")


def test_help_shows_each_option_with_its_meaning_under_its_group():
    # under `python -m` the config class lives in __main__: its comments must still be read (they were lost there before)
    text = run_module("tinyaction.train", "--help").stdout
    for heading in ("data:", "model:", "optimisation:", "loss:", "long tail:", "distillation:", "runtime:"):
        assert f"\n{heading}\n" in text, heading
    loss_group = text[text.index("\nloss:\n"):text.index("\nlong tail:\n")]
    assert "--gamma_neg VALUE" in loss_group and "focusing exponent for negatives" in " ".join(loss_group.split())
    assert "passes over the training split (default: 24)" in " ".join(text.split())


@pytest.mark.parametrize("notebook, name, closest", [("03_train.ipynb", "epoch", "epochs"),
                                                     ("04_evaluate.ipynb", "num_clip", "num_clips")])
def test_a_misspelt_papermill_parameter_stops_the_notebook_naming_it(tmp_path, notebook, name, closest):
    # before: the config cell read the namespace with ignore_unknown=True, so `-p epoch 1` trained the default 24 epochs
    out_dir = tmp_path / "run"
    result = run_papermill(notebook, tmp_path / "out.ipynb", (name, 1), ("out_dir", out_dir))
    assert result.returncode != 0
    assert f"parameter '{name}': got 1; expected '{closest}' (the closest name) or another of the parameters [" in result.stderr
    assert not out_dir.exists()  # stopped before any work


def test_a_misspelt_command_line_option_names_the_closest_one():
    result = subprocess.run([sys.executable, "-m", "tinyaction.train", "--epoch", "1"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2
    assert "unrecognized arguments: --epoch 1 (did you mean --epochs for --epoch?)" in result.stderr
