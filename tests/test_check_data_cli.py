"""smoke/check_data.py: exit codes 0 (usable), 1 (refused), 2 (not found); ROOT left untouched."""

from pathlib import Path

import numpy as np
import py7zr
import soundfile as sf

from smoke.check_data import EXIT_NOT_FOUND, EXIT_OK, EXIT_REFUSED, main
from smoke.dataset import build_local_dataset

SR = 16000


def _tree(root: Path, shift: float = 0.0, n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for noisy_dir, clean_dir in (("train", "y_train"), ("test", "y_test")):
        (root / noisy_dir).mkdir(parents=True)
        (root / clean_dir).mkdir(parents=True)
        for i in range(n):
            s = (rng.standard_normal(3 * SR) * 0.1).astype(np.float32)
            clean = s[: 2 * SR]
            noisy = clean + 0.03 * rng.standard_normal(2 * SR).astype(np.float32)
            if noisy_dir == "train" and shift:
                clean = s[int(shift * SR) : int(shift * SR) + 2 * SR]
            sf.write(str(root / noisy_dir / f"{i:04d}.wav"), noisy, SR, subtype="PCM_16")
            sf.write(str(root / clean_dir / f"{i:04d}.wav"), clean, SR, subtype="PCM_16")
    return root


def _snapshot(root: Path):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


def test_usable_dataset_exit_0(tmp_path, capsys):
    root = _tree(tmp_path / "input" / "datasets" / "o" / "slug")
    assert main([str(tmp_path / "input"), "--work-dir", str(tmp_path / "w")]) == EXIT_OK
    out = capsys.readouterr().out
    assert "Data check [train]: 4 pairs" in out and "Data check [test]: 4 pairs" in out
    assert out.count("verdict: USABLE") == 2
    assert root.is_dir()


def test_misaligned_train_exit_1(tmp_path, capsys):
    _tree(tmp_path / "input", shift=0.5)
    assert main([str(tmp_path / "input"), "--work-dir", str(tmp_path / "w")]) == EXIT_REFUSED
    out = capsys.readouterr().out
    assert "verdict: REFUSED: noisy/clean correlation" in out and "verdict: USABLE" in out  # test is fine
    # A permissive threshold accepts the same data.
    assert main([str(tmp_path / "input"), "--work-dir", str(tmp_path / "w"), "--min-corr", "-1"]) == EXIT_OK
    # Every misaligned pair is named, and a tolerant fraction alone does not let the mean through.
    assert main([str(tmp_path / "input"), "--work-dir", str(tmp_path / "w"),
                 "--max-low-corr", "1.0"]) == EXIT_REFUSED


def test_not_found_exit_2(tmp_path, capsys):
    (tmp_path / "input" / "train").mkdir(parents=True)
    assert main([str(tmp_path / "input"), "--work-dir", str(tmp_path / "w")]) == EXIT_NOT_FOUND
    err = capsys.readouterr().err
    assert "error: dataset not found under" in err and "y_test" in err


def test_archives_extracted_into_work_dir_not_root(tmp_path, capsys):
    src = _tree(tmp_path / "src")
    root = tmp_path / "input"
    root.mkdir()
    for name in ("train", "y_train", "test", "y_test"):
        with py7zr.SevenZipFile(root / f"{name}.7z", "w") as z:
            z.writeall(src / name, arcname=name)
    before = _snapshot(root)
    work = tmp_path / "w"
    assert main([str(root), "--work-dir", str(work)]) == EXIT_OK
    assert _snapshot(root) == before
    assert sorted(p.name for p in (work / "data").iterdir()) == ["test", "train", "y_test", "y_train"]
    assert "Data check [train]: 4 pairs" in capsys.readouterr().out


def test_local_generated_dataset_passes(tmp_path, capsys):
    out = build_local_dataset(tmp_path / "ds", n_train=2, n_test=1, seconds=(3.0, 3.5), seed=1, archives=True)
    assert main([str(out), "--work-dir", str(tmp_path / "w")]) == EXIT_OK, capsys.readouterr().out
