"""The life of a run directory in `prepare`: what a new run replaces, what a resume checks."""

import dataclasses

import numpy as np
import pytest

from sesemi_common.config import Config, ConfigError, apply_overrides
from sesemi_common.datasets import load_digits
from sesemi_common.experiment import prepare
from sesemi_common.runs import RunDir, RunDirError
from sesemi_common.splits import SplitError

TINY = ["data.image_size=16", "data.n_labels=20", "train.steps=8", "train.batch_labeled=8", "train.batch_unlabeled=2"]


@pytest.fixture(scope="module")
def digits():
    return load_digits(16)


def tiny(*overrides):
    return apply_overrides(Config(), [*TINY, *overrides])


def _stopped_run(path, dataset, config=None):
    """A run that reached a checkpoint (its folder is what RunDir recognizes) and then stopped."""
    exp = prepare(config or tiny(), path, dataset=dataset)
    (exp.run.checkpoints / "4").mkdir(parents=True)
    return exp


def test_a_failed_start_writes_nothing(tmp_path, digits):
    with pytest.raises(ConfigError, match=r"train.batch_labeled \(200\) is larger than the labeled set"):
        prepare(tiny("train.batch_labeled=200"), tmp_path / "run", dataset=digits)
    with pytest.raises(SplitError, match="data.n_labels=55 is not a positive multiple of the 10 classes"):
        prepare(tiny("data.n_labels=55"), tmp_path / "run", dataset=digits)
    assert not (tmp_path / "run").exists()


def test_a_new_run_replaces_an_unfinished_start(tmp_path, digits, capsys):
    first = prepare(tiny("data.split_seed=1"), tmp_path / "run", dataset=digits)
    first.run.append_metrics({"step": 2, "loss": float("nan")})
    again = prepare(tiny(), tmp_path / "run", dataset=digits)
    assert capsys.readouterr().err == (f"note: {tmp_path / 'run'} held an unfinished start (no checkpoint, "
                                       "no summary): replacing it\n")
    assert again.run.read_config() == tiny() and again.run.read_metrics() == []
    assert not np.array_equal(first.labeled, again.labeled)  # the new split_seed, not the old split


def test_a_new_run_refuses_a_stopped_or_finished_run(tmp_path, digits):
    exp = _stopped_run(tmp_path / "run", digits)
    with pytest.raises(RunDirError, match=r"already holds a run \(stopped at its checkpoint of step 4\): pass "
                                          "--resume to continue it, --overwrite to replace it"):
        prepare(tiny(), tmp_path / "run", dataset=digits)
    exp.run.write_summary({"final_test_accuracy": 0.5})
    with pytest.raises(RunDirError, match=r"already holds a run \(finished, see its summary.json\): pass --overwrite"):
        prepare(tiny(), tmp_path / "run", dataset=digits)
    with pytest.raises(RunDirError, match="is finished .*: nothing to resume"):
        prepare(tiny(), tmp_path / "run", resume=True, dataset=digits)
    assert exp.run.read_summary() == {"final_test_accuracy": 0.5}


def test_resume_with_a_lower_lr_is_recorded(tmp_path, digits, capsys):
    _stopped_run(tmp_path / "run", digits)
    capsys.readouterr()
    exp = prepare(tiny("optim.lr=0.01"), tmp_path / "run", resume=True, dataset=digits)
    assert RunDir(tmp_path / "run").read_config().optim.lr == 0.01 and exp.config.optim.lr == 0.01
    assert capsys.readouterr().err == (f"note: resuming {tmp_path / 'run'} with optim.lr 0.05 -> 0.01 "
                                       "(recorded in its config.json)\n")
    with pytest.raises(ConfigError, match="--resume cannot change train.batch_labeled: the run started with "
                                          "train.batch_labeled=8, this command asks for 4"):
        prepare(tiny("optim.lr=0.01", "train.batch_labeled=4"), tmp_path / "run", resume=True, dataset=digits)


def _changed(dataset, train_images=None, train_labels=None):
    return dataclasses.replace(dataset, train_images=dataset.train_images if train_images is None else train_images,
                               train_labels=dataset.train_labels if train_labels is None else train_labels)


def test_resume_refuses_data_that_changed_and_says_what(tmp_path, digits):
    exp = _stopped_run(tmp_path / "run", digits)
    fewer = _changed(digits, digits.train_images[:-15], digits.train_labels[:-15])
    with pytest.raises(ConfigError, match=f"the training data changed since {tmp_path / 'run'} started: it has "
                                          "1418 images, the run started with 1433; put back the data"):
        prepare(tiny(), tmp_path / "run", resume=True, dataset=fewer)
    labels = digits.train_labels.copy()
    labels[[0, -1]] = labels[[-1, 0]]  # one image of one class out, one of another in: same count
    with pytest.raises(ConfigError, match="the training labels changed since .* started"):
        prepare(tiny(), tmp_path / "run", resume=True, dataset=_changed(digits, train_labels=labels))
    images = digits.train_images.copy()
    images[exp.labeled[3]] ^= 1
    with pytest.raises(ConfigError, match="the labeled training images changed since .* started"):
        prepare(tiny(), tmp_path / "run", resume=True, dataset=_changed(digits, train_images=images))
    unlabeled = int(np.setdiff1d(np.arange(len(images)), exp.labeled)[0])
    images = digits.train_images.copy()
    images[unlabeled] ^= 1  # outside the fingerprint by design: only the labeled bytes are hashed
    assert prepare(tiny(), tmp_path / "run", resume=True, dataset=_changed(digits, train_images=images)).labeled.tolist() \
        == exp.labeled.tolist()


def test_a_run_without_a_fingerprint_resumes_with_a_warning(tmp_path, digits, capsys):
    exp = _stopped_run(tmp_path / "run", digits)
    split = exp.run.read_split()
    exp.run.write_split(split["labeled"], mean=split["mean"], std=split["std"])  # as written before fingerprints
    capsys.readouterr()
    resumed = prepare(tiny(), tmp_path / "run", resume=True, dataset=digits)
    err = capsys.readouterr().err
    assert err.startswith(f"warning: {tmp_path / 'run'} was started before sesemi saved a fingerprint") and \
        err.count("\n") == 1
    assert resumed.labeled.tolist() == exp.labeled.tolist()
    fewer = _changed(digits, digits.train_images[:100], digits.train_labels[:100])
    with pytest.raises(ConfigError, match=r"split.npz names training image \d+ but the data has only 100"):
        prepare(tiny(), tmp_path / "run", resume=True, dataset=fewer)


def test_resume_of_an_empty_or_missing_folder_creates_nothing(tmp_path, digits):
    with pytest.raises(RunDirError, match=f"{tmp_path / 'none'} does not exist: nothing to resume"):
        prepare(tiny(), tmp_path / "none", resume=True, dataset=digits)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match=r"holds no run \(no config.json\): nothing to resume"):
        prepare(tiny(), tmp_path / "empty", resume=True, dataset=digits)
    assert not (tmp_path / "none").exists() and list((tmp_path / "empty").iterdir()) == []


def test_zca_statistics_are_saved_in_the_split_and_reused_on_resume(tmp_path, digits, capsys):
    exp = _stopped_run(tmp_path / "run", digits, tiny("augment.normalize=zca"))
    assert "computing GCN + ZCA statistics of 1433 training images" in capsys.readouterr().err
    split = RunDir(tmp_path / "run").read_split()
    assert split["zca_mean"].shape == (768,) and split["zca_matrix"].shape == (768, 768)  # 16 x 16 x 3
    np.testing.assert_array_equal(split["zca_matrix"], exp.zca[1])
    resumed = prepare(tiny("augment.normalize=zca"), tmp_path / "run", resume=True, dataset=digits)
    assert "computing" not in capsys.readouterr().err  # read back, not recomputed
    np.testing.assert_array_equal(resumed.zca[0], exp.zca[0])
    np.testing.assert_array_equal(resumed.zca[1], exp.zca[1])


def test_channel_normalization_keeps_no_zca(tmp_path, digits):
    exp = prepare(tiny(), tmp_path / "run", dataset=digits)
    assert exp.zca is None and "zca_matrix" not in RunDir(tmp_path / "run").read_split()


def test_zca_of_images_too_large_is_refused_before_writing(tmp_path, digits):
    large = dataclasses.replace(digits, train_images=np.zeros((40, 96, 96, 3), np.uint8))
    with pytest.raises(ConfigError, match=r"augment.normalize=zca needs a \(27648, 27648\) matrix"):
        prepare(tiny("augment.normalize=zca"), tmp_path / "run", dataset=large)
    assert not (tmp_path / "run").exists()


def test_the_data_fingerprint_hashes_block_by_block_to_the_whole_bytes_digest(monkeypatch):
    # Runs started before the pool could be memory-mapped saved the digest of the whole array's bytes:
    # hashing a block of rows at a time must give the very same digest, or their resume is refused.
    import hashlib

    from sesemi_common import experiment, mmap_cache
    images = np.random.default_rng(0).integers(0, 256, (37, 8, 8, 3), dtype=np.uint8)
    monkeypatch.setattr(mmap_cache, "CHUNK_BYTES", 1000)  # 5 rows a block
    for array in (images, images[::2], np.arange(11, dtype=np.int64)):
        assert experiment._sha256(array) == hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
