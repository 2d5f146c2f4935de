"""VoiceBank+DEMAND: the dataset table, discovery in its Kaggle layout at 48 kHz, the builder
option, the summary's published figures, and (slow) a rehearsal of a notebook rendered for it."""

from __future__ import annotations

import json

import pytest
import soundfile as sf

from builders import compact_crn
from smoke.dataset import build_local_dataset
from templates.data import AlignedCropDataset, find_dataset, pair_files
from templates.datacheck import check_pairs
from templates.datasets import (
    DATASET_FIELDS,
    DATASETS,
    dataset_source,
    format_published_comparison,
    published_comparison,
)
from tests.helpers.notebooks import read_validated


@pytest.fixture(scope="module")
def vb_fake(tmp_path_factory):
    """A tiny fake in the Kaggle VoiceBank+DEMAND layout: nested folders, 48 kHz PCM_16."""
    return build_local_dataset(tmp_path_factory.mktemp("vb"), n_train=4, n_test=2,
                               seconds=(1.2, 1.5), seed=1, layout="vbdemand")


def test_table_rows_name_slug_folders_rate_and_published_figures():
    vb = dataset_source("vbdemand")
    assert vb.slug == "sayuksh/denoising-audio-collection" and vb.sample_rate == 48000
    assert tuple(vb.folders) == DATASET_FIELDS
    assert vb.folders["train_noisy"] == "noisy_trainset_28spk_wav"
    assert vb.folders["test_clean"] == "clean_testset_wav" and vb.test_pairs == 824
    assert {k: v["pesq"] for k, v in vb.published.items()} == \
        {"noisy": 1.97, "RNNoise": 2.29, "GTCRN": 2.87}
    assert all(v["source"] for v in vb.published.values())
    assert DATASETS["libri"].folders == {"train_noisy": "train", "train_clean": "y_train",
                                         "test_noisy": "test", "test_clean": "y_test"}
    with pytest.raises(ValueError, match="unknown dataset 'nope'; known datasets: libri, vbdemand"):
        dataset_source("nope")


def test_run_config_accepts_only_table_rows():
    from templates.config import RunConfig

    assert RunConfig(dataset="vbdemand").dataset == "vbdemand"
    assert RunConfig.problems_in({"dataset": "vctk"}) == [
        "dataset must be one of ['libri', 'vbdemand'], got 'vctk'"]


def test_fake_is_48k_in_nested_kaggle_folders(vb_fake):
    wav = vb_fake / "noisy_testset_wav" / "noisy_testset_wav" / "p232_005.wav"
    info = sf.info(str(wav))
    assert info.samplerate == 48000 and info.subtype == "PCM_16" and info.channels == 1
    meta = json.loads((vb_fake / "manifest.json").read_text())
    assert meta["layout"] == "vbdemand" and meta["sample_rate"] == 48000


def test_find_dataset_uses_the_row_folder_names(vb_fake, tmp_path):
    layout = find_dataset(vb_fake, tmp_path, "vbdemand")
    assert layout.train_noisy.name == "noisy_trainset_28spk_wav"
    assert layout.train_noisy.parent.name == "noisy_trainset_28spk_wav"  # nested one level
    assert layout.test_clean.name == "clean_testset_wav"
    with pytest.raises(FileNotFoundError, match="'libri' layout.*no folder 'train'"):
        find_dataset(vb_fake, tmp_path)  # the default row does not match this layout


def test_48k_pairs_are_checked_and_read_at_16k(vb_fake, tmp_path):
    layout = find_dataset(vb_fake, tmp_path, "vbdemand")
    pairing = pair_files(layout.train_noisy, layout.train_clean)
    assert [p[0].name for p in pairing.pairs] == [f"p226_{i:03d}.wav" for i in range(1, 5)]
    report = check_pairs(pairing, sample_rate=16000, crop_seconds=1.0, seed=0, label="train")
    report.raise_if_refused()
    assert len(report.usable_pairs) == 4
    assert "48000" in report.format()  # the rate is reported, and the files are resampled
    ds = AlignedCropDataset(report.usable_pairs, 16000, train=True, sample_rate=16000)
    native = sf.info(str(pairing.pairs[0][0])).frames
    assert abs(ds.lengths[0] - native // 3) <= 1
    noisy, clean = ds[0]
    assert noisy.shape == clean.shape == (16000,)


def test_summary_block_compares_only_the_full_standard_test_set():
    measured = {"noisy": {"pesq": 1.95}, "enhanced": {"pesq": 2.6}}
    full = published_comparison("vbdemand", measured, 824, "full")
    assert full["comparable"] is True and full["test_pairs_scored"] == 824
    systems = {r["system"]: r["pesq"] for r in full["pesq_table"]}
    assert systems == {"noisy": 1.97, "RNNoise": 2.29, "GTCRN": 2.87,
                       "this run (noisy)": 1.95, "this run (enhanced)": 2.6}
    part = published_comparison("vbdemand", measured, 2, "full")
    assert part["comparable"] is False and "scored 2 of the standard 824" in part["note"]
    assert published_comparison("vbdemand", measured, 824, "first3")["comparable"] is False
    assert "GTCRN" in format_published_comparison(full)
    assert published_comparison("libri", measured, 105, "full")["pesq_table"] == []


def test_builder_dataset_option_sets_parameter_and_mounted_slug(tmp_path, capsys):
    out = tmp_path / "vb"
    assert compact_crn.main(["--out", str(out), "--user", "alice", "--dataset", "vbdemand"]) == 0
    nb = read_validated(out / "compact_crn.ipynb")
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    ns: dict = {}
    exec(params.source, ns)
    assert ns["DATASET"] == "vbdemand"
    intro = nb.cells[0].source
    assert "sayuksh/denoising-audio-collection" in intro and "libri" not in intro
    meta = json.loads((out / "kernel-metadata.json").read_text())
    assert meta["dataset_sources"] == ["sayuksh/denoising-audio-collection"]
    assert "data sayuksh/denoising-audio-collection" in capsys.readouterr().out
    assert compact_crn.main(["--out", str(tmp_path / "bad"), "--user", "a", "--dataset", "vb"]) == 2
    assert "--dataset 'vb': dataset must be one of ['libri', 'vbdemand']" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before anything is written


@pytest.mark.slow
def test_rehearsal_of_a_vbdemand_notebook_on_the_fake(tmp_path):
    from smoke.run import run_smoke

    report = run_smoke(["compact_crn"], rehearse=True, dataset="vbdemand", echo=lambda *_: None)
    assert report.ok, report.table()
    summary = report.rehearsals["compact_crn"].summary
    assert summary["config"]["dataset"] == "vbdemand"
    block = summary["dataset"]
    assert block["name"] == "vbdemand" and block["test_pairs_scored"] == 2
    assert block["comparable"] is False  # 2 of 824 files: numbers are not set beside the paper's
    assert {r["system"] for r in block["pesq_table"]} >= {"noisy", "RNNoise", "GTCRN"}


def test_check_data_cli_takes_the_dataset_row(vb_fake, tmp_path, capsys):
    from smoke.check_data import main

    assert main([str(vb_fake), "--work-dir", str(tmp_path), "--dataset", "vbdemand"]) == 0
    out = capsys.readouterr().out
    assert "Data check [test]: 2 pairs" in out and "sample rate 48000, expected 16000" in out
    assert main([str(vb_fake), "--work-dir", str(tmp_path)]) == 2  # default row: not found


def test_smoke_data_check_follows_the_dataset_row(vb_fake, capsys):
    from smoke.run import main

    with pytest.raises(SystemExit):  # default names: refused up front, naming what is absent
        main(["--rehearse", "--data", str(vb_fake), "--model", "compact_crn"])
    assert "no train, y_train, test, y_test below it" in capsys.readouterr().err
