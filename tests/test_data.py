"""templates.data: discovery, extraction, pairing, split, aligned crops, loaders."""

import tempfile
from pathlib import Path

import numpy as np
import py7zr
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import templates.data as td
from compat.audio import AudioReadError
from templates.data import (
    AlignedCropDataset,
    DatasetLayout,
    DatasetNotFoundError,
    find_dataset,
    make_loader,
    pair_files,
    split_pairs,
)

SCALE = 2.0**20  # sample value = (index + 1) / SCALE is exact in float32 for these lengths


def _wav(path: Path, n: int, sr: int = 16000, sign: float = 1.0) -> Path:
    """A float wav whose sample k holds sign * (k + 1) / SCALE, so any crop reveals its indices."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = sign * (np.arange(n, dtype=np.float64) + 1) / SCALE
    sf.write(str(path), x.astype(np.float32), sr, subtype="FLOAT")
    return path


def _indices(x: torch.Tensor, sign: float = 1.0) -> np.ndarray:
    """Sample indices encoded by ``_wav`` (-1 where zero-padded)."""
    return np.round(x.numpy().astype(np.float64) * sign * SCALE).astype(np.int64) - 1


def _make_split(root: Path, name: str, names, n: int = 800) -> None:
    for f in names:
        _wav(root / name / f, n)


def _full_tree(root: Path, names=("a.wav", "b.wav")) -> None:
    for folder in ("train", "y_train", "test", "y_test"):
        _make_split(root, folder, names)


def _archive(folder: Path, archive: Path, arcname: str) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with py7zr.SevenZipFile(archive, "w") as z:
        z.writeall(folder, arcname=arcname)


def _snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# ---------------------------------------------------------------- find_dataset


def test_find_dataset_new_kaggle_mount(tmp_path):
    slug = tmp_path / "input" / "datasets" / "earth16" / "libri-speech-noise-dataset"
    _full_tree(slug)
    layout = find_dataset(tmp_path / "input", tmp_path / "work")
    assert layout == DatasetLayout(slug / "train", slug / "y_train", slug / "test", slug / "y_test")
    assert not (tmp_path / "work").exists()  # nothing to extract, nothing written


def test_find_dataset_old_mount_with_nested_folders(tmp_path):
    slug = tmp_path / "input" / "libri-speech-noise-dataset"
    for folder in ("train", "y_train", "test", "y_test"):
        _make_split(slug / folder, folder, ["x.wav"])  # train/train/x.wav
    layout = find_dataset(tmp_path / "input", tmp_path / "work")
    assert layout.train_noisy == slug / "train" / "train"
    assert layout.test_clean == slug / "y_test" / "y_test"


def test_find_dataset_extracts_archives_once_and_never_writes_input(tmp_path, monkeypatch):
    src = tmp_path / "src"
    _full_tree(src)
    data_dir = tmp_path / "input" / "datasets" / "o" / "s"
    # Archive layouts seen in the wild: folder at the top, or nested one more level.
    _archive(src / "train", data_dir / "train.7z", "train")
    _archive(src / "y_train", data_dir / "y_train.7z", "y_train/y_train")
    _archive(src / "test", data_dir / "test.7z", "test")
    _archive(src / "y_test", data_dir / "y_test.7z", "y_test")
    before = _snapshot(tmp_path / "input")
    work = tmp_path / "work"
    layout = find_dataset(tmp_path / "input", work)
    assert _snapshot(tmp_path / "input") == before
    for p in (layout.train_noisy, layout.train_clean, layout.test_noisy, layout.test_clean):
        assert work / "data" in p.parents and sorted(f.name for f in p.glob("*.wav")) == ["a.wav", "b.wav"]
    assert layout.train_clean.name == "y_train"

    def no_second_extraction(*a, **k):
        raise AssertionError("extracted twice")

    monkeypatch.setattr(py7zr, "SevenZipFile", no_second_extraction)
    assert find_dataset(tmp_path / "input", work) == layout


def test_find_dataset_mixes_folders_and_archives(tmp_path):
    src = tmp_path / "src"
    _make_split(src, "y_test", ["a.wav"])
    data_dir = tmp_path / "input"
    for folder in ("train", "y_train", "test"):
        _make_split(data_dir / "slug", folder, ["a.wav"])
    _archive(src / "y_test", data_dir / "slug" / "y_test.7z", "y_test")
    layout = find_dataset(data_dir, tmp_path / "work")
    assert layout.train_noisy == data_dir / "slug" / "train"
    assert layout.test_clean == tmp_path / "work" / "data" / "y_test" / "y_test"


def test_interrupted_extraction_is_redone(tmp_path):
    src = tmp_path / "src"
    _full_tree(src)
    data_dir = tmp_path / "input"
    for folder in ("train", "y_train", "test"):
        _make_split(data_dir, folder, ["a.wav", "b.wav"])
    _archive(src / "y_test", data_dir / "y_test.7z", "y_test")
    # A half-written earlier attempt: a folder but no completion marker.
    _make_split(tmp_path / "work" / "data" / "y_test", "y_test", ["a.wav"])
    layout = find_dataset(data_dir, tmp_path / "work")
    assert sorted(f.name for f in layout.test_clean.glob("*.wav")) == ["a.wav", "b.wav"]


def test_missing_folders_are_named(tmp_path):
    data_dir = tmp_path / "input"
    for folder in ("train", "y_train"):
        _make_split(data_dir, folder, ["a.wav"])
    (data_dir / "test").mkdir()  # exists, but holds no wavs
    with pytest.raises(DatasetNotFoundError) as ei:
        find_dataset(data_dir, tmp_path / "work")
    msg = str(ei.value)
    assert isinstance(ei.value, FileNotFoundError)
    assert str(data_dir) in msg and "y_test" in msg and "test.7z" in msg
    assert "without wavs" in msg and "y_train:" not in msg


def test_missing_data_dir(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        find_dataset(tmp_path / "nope", tmp_path / "work")


# ---------------------------------------------------------------- pairing and split


def test_pair_files_by_name(tmp_path):
    for f in ("c.wav", "a.wav", "b.wav", "only_noisy.wav", "notes.txt"):
        _wav(tmp_path / "train" / f, 10) if f.endswith(".wav") else (tmp_path / "train" / f).write_text("x")
    for f in ("b.wav", "a.wav", "c.wav", "only_clean.wav"):
        _wav(tmp_path / "y_train" / f, 10)
    p = pair_files(tmp_path / "train", tmp_path / "y_train")
    assert [(n.name, c.name) for n, c in p.pairs] == [("a.wav", "a.wav"), ("b.wav", "b.wav"), ("c.wav", "c.wav")]
    assert all(n.parent.name == "train" and c.parent.name == "y_train" for n, c in p.pairs)
    assert [x.name for x in p.unpaired_noisy] == ["only_noisy.wav"]
    assert [x.name for x in p.unpaired_clean] == ["only_clean.wav"]


def test_pair_files_missing_folder(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetNotFoundError, match="y_train"):
        pair_files(tmp_path / "train", tmp_path / "y_train")


def _pairs(n):
    return [(Path(f"train/{i:04d}.wav"), Path(f"y_train/{i:04d}.wav")) for i in range(n)]


def test_split_is_deterministic_disjoint_and_90_10():
    pairs = _pairs(1000)
    train, val = split_pairs(pairs, 0.1, seed=42)
    assert len(val) == 100 and len(train) == 900
    assert sorted(train + val) == sorted(pairs)
    shuffled = list(reversed(pairs))
    assert split_pairs(shuffled, 0.1, seed=42) == (train, val)
    assert split_pairs(pairs, 0.1, seed=7)[1] != val
    assert val == sorted(val)


def test_split_small_and_bad():
    assert split_pairs(_pairs(1)) == (_pairs(1), [])
    train, val = split_pairs(_pairs(3), 0.1)
    assert len(val) == 1 and len(train) == 2
    with pytest.raises(ValueError, match="val_fraction"):
        split_pairs(_pairs(5), 1.5)


# ---------------------------------------------------------------- aligned crops


def test_eval_crops_start_at_zero_and_pad(tmp_path):
    pairs = [(_wav(tmp_path / "n" / "a.wav", 1000), _wav(tmp_path / "c" / "a.wav", 900, sign=-1))]
    ds = AlignedCropDataset(pairs, crop_samples=1200, train=False)
    noisy, clean = ds[0]
    assert noisy.shape == clean.shape == (1200,) and noisy.dtype == clean.dtype == torch.float32
    assert ds.crop_offset(0) == 0
    idx = _indices(noisy)
    np.testing.assert_array_equal(idx[:900], np.arange(900))  # usable = the shorter file
    assert (noisy[900:] == 0).all() and (clean[900:] == 0).all()
    np.testing.assert_array_equal(_indices(clean, -1), idx)


def test_train_offsets_reproducible_per_seed_epoch_index(tmp_path):
    pairs = [(_wav(tmp_path / "n" / f"{i}.wav", 5000), _wav(tmp_path / "c" / f"{i}.wav", 5000)) for i in range(4)]
    ds = AlignedCropDataset(pairs, crop_samples=400, train=True, seed=3)
    ds2 = AlignedCropDataset(list(pairs), crop_samples=400, train=True, seed=3)
    e0 = [ds.crop_offset(i) for i in range(4)]
    assert e0 == [ds2.crop_offset(i, epoch=0) for i in range(4)]
    ds.set_epoch(1)
    e1 = [ds.crop_offset(i) for i in range(4)]
    assert e1 == [ds2.crop_offset(i, epoch=1) for i in range(4)] and e1 != e0
    assert all(0 <= o <= 4600 for o in e0 + e1)
    assert [AlignedCropDataset(pairs, 400, seed=4).crop_offset(i) for i in range(4)] != e0
    noisy, clean = ds[2]
    np.testing.assert_array_equal(_indices(noisy), np.arange(e1[2], e1[2] + 400))


def test_only_the_crop_is_read(tmp_path, monkeypatch):
    pairs = [(_wav(tmp_path / "n" / "a.wav", 20000), _wav(tmp_path / "c" / "a.wav", 20000))]
    ds = AlignedCropDataset(pairs, crop_samples=800, train=True)
    calls = []
    real = td.load_audio
    monkeypatch.setattr(td, "load_audio", lambda *a, **k: calls.append(k) or real(*a, **k))
    ds[0]
    off = ds.crop_offset(0)
    assert calls == [{"offset": off, "frames": 800}] * 2


def test_resampled_files_crop_in_target_samples(tmp_path):
    n8 = tmp_path / "n" / "a.wav"
    c16 = _wav(tmp_path / "c" / "a.wav", 8000)
    n8.parent.mkdir()
    sf.write(str(n8), np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1, 8000)
    ds = AlignedCropDataset([(n8, c16)], crop_samples=1000, train=True)
    assert ds.lengths == [8000]
    noisy, clean = ds[0]
    off = ds.crop_offset(0)
    from compat.audio import load_audio

    np.testing.assert_allclose(noisy.numpy(), load_audio(n8)[off : off + 1000].numpy(), atol=1e-6)
    np.testing.assert_array_equal(_indices(clean), np.arange(off, off + 1000))


def test_unreadable_file_at_training_time_names_it(tmp_path):
    pairs = [(_wav(tmp_path / "train" / "0012.wav", 3000), _wav(tmp_path / "y_train" / "0012.wav", 3000))]
    ds = AlignedCropDataset(pairs, crop_samples=1000)
    pairs[0][1].write_bytes(b"garbage" * 100)  # corrupted after the check
    with pytest.raises(AudioReadError, match="y_train/0012.wav: cannot read"):
        ds[0]
    with pytest.raises(IndexError):
        ds[5]


def test_bad_crop_length(tmp_path):
    with pytest.raises(ValueError, match="crop_samples"):
        AlignedCropDataset([], crop_samples=0)


@settings(max_examples=30, deadline=None)
@given(
    n_noisy=st.integers(1, 3000),
    n_clean=st.integers(1, 3000),
    crop=st.integers(1, 2500),
    seed=st.integers(0, 2**31),
    epoch=st.integers(0, 50),
    train=st.booleans(),
)
def test_noisy_and_clean_crops_always_share_sample_indices(n_noisy, n_clean, crop, seed, epoch, train):
    with tempfile.TemporaryDirectory() as d:
        pair = (_wav(Path(d) / "n.wav", n_noisy), _wav(Path(d) / "c.wav", n_clean, sign=-1))
        ds = AlignedCropDataset([pair], crop_samples=crop, train=train, seed=seed)
        ds.set_epoch(epoch)
        noisy, clean = ds[0]
    assert noisy.shape == clean.shape == (crop,)
    ni, ci = _indices(noisy), _indices(clean, -1)
    np.testing.assert_array_equal(ni, ci)  # same sample indices, padding at the same place
    usable = min(n_noisy, n_clean)
    off = ds.crop_offset(0)
    assert 0 <= off and (off == 0 if not train else off + min(crop, usable) <= usable)
    n_real = min(crop, usable - off)
    np.testing.assert_array_equal(ni[:n_real], np.arange(off, off + n_real))
    assert (ni[n_real:] == -1).all()


# ---------------------------------------------------------------- loaders


def test_make_loader_settings_and_seeded_shuffle(tmp_path):
    # Files of distinct lengths, crop longer than all: the padded length tells which file it was.
    pairs = [(_wav(tmp_path / "n" / f"{i}.wav", 100 + i), _wav(tmp_path / "c" / f"{i}.wav", 100 + i)) for i in range(8)]
    ds = AlignedCropDataset(pairs, crop_samples=200, train=False)

    def order(seed):
        batch = next(iter(make_loader(ds, batch_size=8, shuffle=True, num_workers=0, seed=seed)))
        return ((batch[0] != 0).sum(dim=1) - 100).tolist()  # file id per row

    assert order(1) == order(1) and sorted(order(1)) == list(range(8))
    assert order(1) != order(2) or order(1) != order(3)
    plain = next(iter(make_loader(ds, batch_size=8, shuffle=False, num_workers=0, seed=1)))
    assert ((plain[0] != 0).sum(dim=1) - 100).tolist() == list(range(8))
    ld = make_loader(ds, batch_size=4, shuffle=True, num_workers=0, seed=1)
    assert ld.pin_memory == torch.cuda.is_available() and not ld.persistent_workers
    ld2 = make_loader(ds, batch_size=3, shuffle=False, num_workers=1, seed=1, drop_last=True)
    assert ld2.persistent_workers and ld2.worker_init_fn is td._worker_init
    assert len(ld2) == 2


def test_set_epoch_reaches_persistent_workers(tmp_path):
    pairs = [(_wav(tmp_path / "n" / f"{i}.wav", 4000), _wav(tmp_path / "c" / f"{i}.wav", 4000)) for i in range(4)]
    ds = AlignedCropDataset(pairs, crop_samples=300, train=True, seed=5)
    loader = make_loader(ds, batch_size=4, shuffle=False, num_workers=1, seed=0)
    first_iterator = None
    for epoch in (0, 1, 2):
        ds.set_epoch(epoch)
        (noisy, clean), = list(loader)  # (4, 300) each
        first_iterator = first_iterator or loader._iterator
        assert loader._iterator is first_iterator  # the same workers served every epoch
        starts = _indices(noisy)[:, 0].tolist()
        assert starts == [ds.crop_offset(i, epoch) for i in range(4)]
        np.testing.assert_array_equal(_indices(clean), _indices(noisy))


# ---------------------------------------------------------------- discovery edge cases


def test_shared_extraction_cache_never_serves_another_datasets_files(tmp_path):
    # smoke/check_data.py extracts into one temp cache for every ROOT it is given: checking
    # dataset B after dataset A must report B's files, not A's left-over extraction.
    work = tmp_path / "cache"
    names = {"A": ["a1.wav", "a2.wav"], "B": ["b1.wav"]}
    for ds, files in names.items():
        src = tmp_path / ds / "src"
        _full_tree(src, files)
        for folder in ("train", "y_train", "test", "y_test"):
            _archive(src / folder, tmp_path / ds / "input" / f"{folder}.7z", folder)
    for ds in ("A", "B", "A"):
        layout = find_dataset(tmp_path / ds / "input", work)
        for p in (layout.train_noisy, layout.train_clean, layout.test_noisy, layout.test_clean):
            assert sorted(f.name for f in p.glob("*.wav")) == names[ds], (ds, p)


def test_train_folder_inside_y_train_is_not_taken_for_the_noisy_files(tmp_path):
    # The clean folder holds its wavs in an inner folder named "train" (how y_train.7z was
    # packed), while the noisy files are still in train.7z: the inner folder must not be taken
    # for the noisy files ahead of the archive.
    data_dir = tmp_path / "input" / "datasets" / "o" / "s"
    _wav(data_dir / "y_train" / "train" / "a.wav", 800, sign=-1)
    src = tmp_path / "src"
    _make_split(src, "train", ["a.wav"])
    _archive(src / "train", data_dir / "train.7z", "train")
    for folder in ("test", "y_test"):
        _make_split(data_dir, folder, ["a.wav"])
    layout = find_dataset(tmp_path / "input", tmp_path / "work")
    assert layout.train_clean == data_dir / "y_train" / "train"
    assert layout.train_noisy == tmp_path / "work" / "data" / "train" / "train"


def test_noisy_and_clean_resolving_to_one_folder_is_refused(tmp_path):
    # Only y_train/train exists: taking it as both the noisy and the clean folder would pair each
    # file with itself (correlation 1.0, the check would pass) and train an identity.
    data_dir = tmp_path / "input"
    _wav(data_dir / "y_train" / "train" / "a.wav", 800)
    for folder in ("test", "y_test"):
        _make_split(data_dir, folder, ["a.wav"])
    with pytest.raises(DatasetNotFoundError, match="both resolve to"):
        find_dataset(data_dir, tmp_path / "work")


def test_split_folders_nested_in_one_parent_are_still_found(tmp_path):
    # train/{train,y_train} and test/{test,y_test}: the clean folders sit inside a folder of
    # another dataset name but there is nothing better, so they are used.
    data_dir = tmp_path / "input"
    for outer, inner in (("train", "train"), ("train", "y_train"), ("test", "test"), ("test", "y_test")):
        _make_split(data_dir / outer, inner, ["a.wav"])
    layout = find_dataset(data_dir, tmp_path / "work")
    assert layout == DatasetLayout(
        data_dir / "train" / "train", data_dir / "train" / "y_train",
        data_dir / "test" / "test", data_dir / "test" / "y_test",
    )


def test_work_dir_inside_the_data_dir_is_not_searched(tmp_path):
    # Locally the cache may lie below ROOT; an archive whose inner folder is named "train" but
    # that was unpacked as y_train must not come back as a "train" folder on the next run.
    data_dir = tmp_path / "ds"
    src = tmp_path / "src"
    _full_tree(src)
    for folder in ("train", "test", "y_test"):
        _archive(src / folder, data_dir / f"{folder}.7z", folder)
    _archive(src / "y_train", data_dir / "y_train.7z", "clean/train")
    work = data_dir / "cache"
    first = find_dataset(data_dir, work)
    assert first.train_clean == work / "data" / "y_train" / "clean" / "train"
    assert first.train_noisy == work / "data" / "train" / "train"
    assert find_dataset(data_dir, work) == first
