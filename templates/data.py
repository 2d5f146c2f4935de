"""Finding, pairing, splitting and cropping the noisy/clean dataset.

A random crop drawn separately for the noisy and the clean file trains a model for hours on
unrelated segments. ``AlignedCropDataset`` draws ONE offset per item and reads the same sample
span from both files.
"""

import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from compat.audio import audio_info, load_audio
from compat.sample_rate import SAMPLE_RATE
from compat.torch_compat import cuda_device_count
from templates.datasets import DATASETS, DEFAULT_DATASET, dataset_source

# Layout field -> folder (and archive stem) name in the default Kaggle dataset; every dataset's
# names are in templates.datasets.DATASETS.
DATASET_FOLDERS = DATASETS[DEFAULT_DATASET].folders
_EXTRACTED_MARKER = ".extracted"


class DatasetError(Exception):
    """The dataset cannot be used as given; the message names the folder or archive."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The wav folders (or their archives) are not where we looked; the message says which."""


class DatasetArchiveError(DatasetError):
    """A ``.7z`` archive could not be extracted (corrupt, truncated, encrypted, no space)."""


@dataclass(frozen=True)
class DatasetLayout:
    """The four wav folders of a dataset."""

    train_noisy: Path
    train_clean: Path
    test_noisy: Path
    test_clean: Path


@dataclass
class Pairing:
    """Noisy/clean files matched by name; ``pairs`` sorted by file name."""

    pairs: list[tuple[Path, Path]]
    unpaired_noisy: list[Path] = field(default_factory=list)
    unpaired_clean: list[Path] = field(default_factory=list)
    noisy_dir: Path | None = None
    clean_dir: Path | None = None


def _is_wav(name: str) -> bool:
    return name.lower().endswith(".wav") and not name.startswith(".")


def _walk_dirs(root: Path):
    """Yield (dir, subdir names, file names) below ``root``, sorted, following links once."""
    seen: set[str] = set()
    for cur, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(cur)
        if real in seen:  # a link cycle, or the same folder reached twice
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        yield Path(cur), dirs, sorted(files)


def _wav_dir_below(folder: Path) -> tuple[Path, int] | None:
    """The shallowest folder at or below ``folder`` holding .wav files, and their count.

    Archives often unpack one level deeper (``train/train/*.wav``), so we look below too.
    """
    best = None
    for cur, _dirs, files in _walk_dirs(folder):
        n = sum(1 for f in files if _is_wav(f))
        if n:
            depth = len(cur.relative_to(folder).parts)
            key = (depth, str(cur))
            if best is None or key < best[0]:
                best = (key, cur, n)
    return None if best is None else (best[1], best[2])


def _scan_dataset_tree(root: Path, skip: Path | None = None, folder_names=None):
    """Folders named like a dataset folder, and ``<name>.7z`` archives, anywhere below ``root``.

    Returns ``(folders, nested, archives, n_dirs)``. A folder named ``train`` that sits inside a
    folder of another dataset name (``y_train/train``: a clean archive's inner folder) goes to
    ``nested``, a last resort, so it is never taken for the noisy folder ahead of ``train.7z``.
    ``skip`` (our own extraction folder, when it lies below ``root``) is not searched.
    ``folder_names``: the layout's four names (default: ``DATASET_FOLDERS``'s).
    """
    wanted = set(folder_names or DATASET_FOLDERS.values())
    folders: dict[str, list[Path]] = {n: [] for n in wanted}
    nested: dict[str, list[Path]] = {n: [] for n in wanted}
    archives: dict[str, list[Path]] = {n: [] for n in wanted}
    n_dirs = 0
    if not root.is_dir():
        return folders, nested, archives, 0
    skip_real = os.path.realpath(skip) if skip is not None else None
    for cur, dirs, files in _walk_dirs(root):
        if skip_real is not None and os.path.realpath(cur) == skip_real:
            dirs[:] = []
            continue
        n_dirs += 1
        above = set(cur.relative_to(root).parts) & wanted
        for d in dirs:
            if d in wanted:
                (nested if above - {d} else folders)[d].append(cur / d)
        for f in files:
            stem, ext = os.path.splitext(f)
            if ext.lower() == ".7z" and stem in wanted:
                archives[stem].append(cur / f)
    return folders, nested, archives, n_dirs


def _pick_wav_dir(candidates: list[Path]) -> Path | None:
    """Among folders of the same name, the one holding the most wavs (ties: shortest path)."""
    found = []
    for c in candidates:
        hit = _wav_dir_below(c)
        if hit is not None:
            found.append((-hit[1], len(str(hit[0])), str(hit[0]), hit[0]))
    return min(found)[3] if found else None


def _archive_stamp(archive: Path) -> str:
    """What the marker records: the archive's real path, size and mtime."""
    st = archive.stat()
    return f"{os.path.realpath(archive)}\t{st.st_size}\t{st.st_mtime_ns}\n"


def _extract_7z(archive: Path, dest: Path) -> Path:
    """Unpack ``archive`` into ``dest`` once; a marker naming the archive makes re-runs skip it.

    The marker must name THIS archive (path, size, mtime): a cache folder shared between datasets
    (``smoke/check_data.py``'s default) never serves one dataset's files for another. Unpacks
    into a temporary sibling first so an interrupted extraction is never mistaken for a finished
    one, and removes it when extraction fails (:class:`DatasetArchiveError` naming the archive).
    """
    marker = dest / _EXTRACTED_MARKER
    stamp = _archive_stamp(archive)
    try:
        if marker.is_file() and marker.read_text() == stamp:
            return dest
    except OSError:
        pass
    try:
        import py7zr
    except ImportError as e:
        raise ImportError(f"extracting {archive} needs py7zr: pip install py7zr") from e
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        with py7zr.SevenZipFile(archive, mode="r") as z:
            z.extractall(path=partial)
    except Exception as e:  # py7zr raises many types for a damaged file (Bad7zFile, EOFError, ...)
        shutil.rmtree(partial, ignore_errors=True)
        hint = ("no space left to extract it; free disk space or choose another work folder"
                if isinstance(e, OSError) and getattr(e, "errno", None) == 28 else
                "the archive is damaged or truncated; download it again")
        detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DatasetArchiveError(
            f"cannot extract {archive} ({type(e).__name__}{': ' + detail if detail else ''}): "
            f"{hint}"
        ) from e
    (partial / _EXTRACTED_MARKER).write_text(stamp)
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    return dest


def find_dataset(data_dir, work_dir, dataset: str = DEFAULT_DATASET) -> DatasetLayout:
    """Locate the four wav folders below ``data_dir``, extracting archives into ``work_dir/data``.

    ``work_dir`` is the scratch folder (``RunConfig.extract_dir``), not the saved output folder.

    ``dataset`` names a row of ``templates.datasets.DATASETS``, which gives the folder names
    (``train``, ``y_train``, ``test``, ``y_test`` for the default; ``noisy_trainset_28spk_wav``
    ... for ``"vbdemand"``). Walks ``data_dir`` at any depth (Kaggle mounts moved from
    ``/kaggle/input/<slug>/`` to ``/kaggle/input/datasets/<owner>/<slug>/``), takes the folders
    of those names holding wavs (possibly nested below that name), and for a missing one unpacks
    ``<name>.7z`` into ``work_dir/data/<name>/`` (once; re-runs reuse it). Never writes into
    ``data_dir``, which is read-only on Kaggle.
    """
    names = dataset_source(dataset).folders
    data_dir, work_dir = Path(data_dir), Path(work_dir)
    if not data_dir.is_dir():
        raise DatasetNotFoundError(f"data folder {data_dir} does not exist")
    extract_root = work_dir / "data"
    folders, nested, archives, n_dirs = _scan_dataset_tree(data_dir, skip=extract_root,
                                                           folder_names=names.values())
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, name in names.items():
        wav_dir = _pick_wav_dir(folders[name])
        if wav_dir is None and archives[name]:
            archive = sorted(archives[name], key=lambda p: (len(p.parts), str(p)))[0]
            hit = _wav_dir_below(_extract_7z(archive, extract_root / name))
            if hit is None:
                missing.append(f"{name}: archive {archive} holds no .wav files")
                continue
            wav_dir = hit[0]
        if wav_dir is None:
            wav_dir = _pick_wav_dir(nested[name])
        if wav_dir is None:
            seen = [str(p) for p in folders[name] + nested[name]]
            detail = f" (folders named {name!r} without wavs: {', '.join(seen)})" if seen else ""
            missing.append(f"{name}: no folder {name!r} with .wav files and no {name}.7z{detail}")
            continue
        found[key] = wav_dir
    if missing:
        raise DatasetNotFoundError(
            f"dataset not found under {data_dir} ({dataset!r} layout; {n_dirs} folders searched; "
            f"extracted archives go to {extract_root}): " + "; ".join(missing)
        )
    by_dir: dict[str, str] = {}
    for key, wav_dir in found.items():
        real = os.path.realpath(wav_dir)
        if real in by_dir:
            raise DatasetNotFoundError(
                f"{names[by_dir[real]]!r} and {names[key]!r} both resolve to "
                f"{wav_dir} under {data_dir}: noisy and clean files must come from different folders"
            )
        by_dir[real] = key
    return DatasetLayout(**found)


def pair_files(noisy_dir, clean_dir) -> Pairing:
    """Match ``noisy_dir/*.wav`` with ``clean_dir/*.wav`` by file name, sorted by name."""
    noisy_dir, clean_dir = Path(noisy_dir), Path(clean_dir)
    for d in (noisy_dir, clean_dir):
        if not d.is_dir():
            raise DatasetNotFoundError(f"{d}: wav folder does not exist")
    noisy = {p.name: p for p in noisy_dir.iterdir() if p.is_file() and _is_wav(p.name)}
    clean = {p.name: p for p in clean_dir.iterdir() if p.is_file() and _is_wav(p.name)}
    both = sorted(noisy.keys() & clean.keys())
    return Pairing(
        pairs=[(noisy[n], clean[n]) for n in both],
        unpaired_noisy=[noisy[n] for n in sorted(noisy.keys() - clean.keys())],
        unpaired_clean=[clean[n] for n in sorted(clean.keys() - noisy.keys())],
        noisy_dir=noisy_dir,
        clean_dir=clean_dir,
    )


def split_pairs(pairs, val_fraction: float = 0.1, seed: int = 42):
    """Deterministic (train, val) split, independent of the input order; both sorted by name.

    At least one pair goes to each side when there are two or more pairs.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    ordered = sorted(pairs, key=lambda p: (Path(p[0]).name, str(p[0]), str(p[1])))
    n = len(ordered)
    if n < 2:
        return list(ordered), []
    n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    val_idx = set(idx[:n_val])
    train = [p for i, p in enumerate(ordered) if i not in val_idx]
    val = [p for i, p in enumerate(ordered) if i in val_idx]
    return train, val


def _length_at_rate(path: Path, sample_rate: int) -> int:
    """Samples of ``path`` at ``sample_rate``, from the header (as resample_poly would output)."""
    info = audio_info(path)
    if info.sample_rate == sample_rate:
        return info.frames
    return -(-info.frames * sample_rate // info.sample_rate)


class AlignedCropDataset(Dataset):
    """Item ``i`` -> ``(noisy (crop_samples,), clean (crop_samples,))`` float32, one shared offset.

    Training draws the offset from a generator seeded by ``(seed, epoch, i)``, so any worker, any
    resume and any process order yields the same crops; evaluation uses offset 0. The usable
    length is the shorter of the two files (headers read once, here). Only the crop is read from
    disk; files shorter than the crop are zero-padded at the end, both at the same place.
    """

    def __init__(self, pairs, crop_samples: int, train: bool = True, sample_rate: int = SAMPLE_RATE, seed: int = 42):
        if crop_samples < 1:
            raise ValueError(f"crop_samples must be >= 1, got {crop_samples}")
        self.pairs = [(Path(n), Path(c)) for n, c in pairs]
        self.crop_samples = int(crop_samples)
        self.train = bool(train)
        self.sample_rate = int(sample_rate)
        self.seed = int(seed)
        # Shared memory: persistent workers keep their own copy of the dataset, and set_epoch in
        # the main process must still reach them.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.lengths = [
            min(_length_at_rate(n, self.sample_rate), _length_at_rate(c, self.sample_rate))
            for n, c in self.pairs
        ]

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose crops items return (call before iterating the loader)."""
        self._epoch[0] = int(epoch)

    def crop_offset(self, i: int, epoch: int | None = None) -> int:
        """Start sample of item ``i``'s crop, shared by noisy and clean."""
        slack = self.lengths[i] - self.crop_samples
        if not self.train or slack <= 0:
            return 0
        e = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, e, int(i)]))
        return int(rng.integers(0, slack + 1))

    def __getitem__(self, i: int):
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} pairs")
        i = i % len(self)
        start = self.crop_offset(i)
        n = min(self.crop_samples, self.lengths[i] - start)  # same span from both files
        noisy_path, clean_path = self.pairs[i]
        out = []
        for path in (noisy_path, clean_path):
            x = torch.zeros(self.crop_samples, dtype=torch.float32)  # (crop_samples,)
            if n > 0:
                wav = load_audio(path, self.sample_rate, offset=start, frames=n)  # (<= n,)
                x[: wav.shape[0]] = wav
            out.append(x)
        return out[0], out[1]


def _worker_init(worker_id: int) -> None:
    """Seed Python and NumPy in a loader worker from torch's per-worker seed."""
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


def make_loader(dataset, batch_size: int, shuffle: bool, num_workers: int, seed: int, drop_last: bool = False, sampler=None) -> DataLoader:
    """A DataLoader with seeded shuffling and, with workers, persistent seeded workers.

    Persistent workers live across epochs: workers torn down at every epoch end fill the log
    with ``^^ AssertionError`` tracebacks. ``shuffle`` is ignored when a ``sampler`` (e.g. a
    DistributedSampler) is given. Memory is pinned only when CUDA is there to use it.
    """
    g = torch.Generator()
    g.manual_seed(int(seed))
    kw = {}
    if num_workers > 0:
        kw = {"persistent_workers": True, "worker_init_fn": _worker_init}
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=bool(shuffle) if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=cuda_device_count() > 0,  # is_available() would poison the DDP fork
        generator=g,
        **kw,
    )
