# Names that moved to their own chapters (issue "Rooms for what comes next") still import from their old modules for one
# release, as the same objects, with a FutureWarning that names the new place.
import importlib

import pytest

MOVED = {
    "tinyaction.evaluate": {"predict": "tinyaction.inference.predict", "resolve_device": "tinyaction.inference.resolve_device",
                            "load_scores": "tinyaction.metrics.load_scores",
                            "compare_score_files": "tinyaction.metrics.compare_score_files"},
    "tinyaction.train": {"cache_if_asked": "tinyaction.loaders.cache_splits", "LOCK_FILE": "tinyaction.run_folder.LOCK_FILE",
                         "RunFolderError": "tinyaction.run_folder.RunFolderError", "Run": "tinyaction.train.TrainingRun",
                         "train_one_epoch": "tinyaction.train.train_epoch", "run_epochs": "tinyaction.train.fit_run"},
    "tinyaction.models": {"to_fast_path": "tinyaction.models.prepare_for_device",
                          "clip_format": "tinyaction.models.input_memory_format",
                          "time_padded": "tinyaction.models.use_time_padded_convs"},
    "tinyaction.video": {"PathLike": "tinyaction.video.StrPath"},
    "tinyaction.config": {"C": "tinyaction.config.ConfigT"},
    "tinyaction.experiments": {"run_one": "tinyaction.experiments.execute_run", "RunTable": "tinyaction.experiments.RunBrowser"},
}


def resolve(dotted: str) -> object:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("module,old,new", [(m, old, new) for m, names in MOVED.items() for old, new in names.items()])
def test_an_old_name_still_imports_with_a_warning(module, old, new):
    with pytest.warns(FutureWarning, match=f"{module}.{old} is now {new}"):
        value = getattr(importlib.import_module(module), old)
    assert value is resolve(new)


def test_an_unknown_name_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'predcit'"):
        importlib.import_module("tinyaction.evaluate").predcit
