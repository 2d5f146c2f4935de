"""Check a noisy/clean pairing before training on it, and say what will be done about each defect.

Cheap checks run on every file from its header (rate, channels, length, sample encoding). Checks
that need the samples decode only what they must:

- non-finite samples: only float wavs (header subtype FLOAT or DOUBLE) can hold NaN or Inf, so
  exactly those files are decoded, whole, in blocks; integer PCM files are not decoded for this;
- silent references: every clean file is decoded whole (in blocks) for its RMS; one below
  ``silence_dbfs`` (-60 dBFS: digital silence or dither) is a named defect and its pair skipped;
- the noisy/clean correlation that exposes misaligned pairs: the first crop of a few sampled pairs;
- a decode attempt on any file whose header cannot be read (to report the decoder's own reason).

Correctly aligned first-3-s crops of the Libri speech/noise dataset measure a correlation of
0.858; crops from different times of the same utterance, or from another file, are near 0. Each
sampled pair below ``min_corr`` is its own defect (named, skipped). The data is refused when the
mean is below ``min_corr`` (everything misaligned) or when more than ``max_low_corr_fraction`` of
the sampled pairs are: with the default 0.2, one odd pair in 8 (a very noisy mix measures about
0.3 at -10 dB SNR) is skipped, two or more say a quarter of the data or more is misaligned, and
the mean of the rest would hide it (3 misaligned pairs of 8 still average about 0.54).
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compat.audio import AUDIO_FLOAT_SUBTYPES, AudioInfo, AudioReadError, audio_info, load_audio
from compat.sample_rate import SAMPLE_RATE

# What happens to a file with each kind of defect.
DATACHECK_ACTIONS = ("resample", "downmix", "trim", "pad", "skip")


class DataError(ValueError):
    """The data is refused for training; the message lists every reason."""


@dataclass(frozen=True)
class DataIssue:
    """One defect of one file (or pair), named relative to the dataset root, and its handling."""

    file: str
    kind: str
    detail: str
    action: str

    def __str__(self) -> str:
        return f"{self.file}: {self.detail} -> {self.action}"


@dataclass
class DataReport:
    """What ``check_pairs`` found; ``ok`` is False when training on it would be wasted time."""

    label: str
    sample_rate: int
    n_noisy: int
    n_clean: int
    n_pairs: int
    usable_pairs: list[tuple[Path, Path]]
    issues: list[DataIssue]
    durations: dict[str, float] | None  # min/mean/max usable seconds, from headers
    correlation: float | None
    correlation_files: list[str]
    min_corr: float
    crop_seconds: float
    max_unusable_fraction: float
    refusals: list[str] = field(default_factory=list)
    low_corr_files: list[str] = field(default_factory=list)  # sampled pairs below min_corr (noisy names)
    max_low_corr_fraction: float = 0.2
    float_files_checked: int = 0  # float wavs decoded whole for NaN/Inf (integer PCM cannot hold them)
    clean_files_scanned: int = 0  # clean references decoded whole for their level (silence)

    @property
    def ok(self) -> bool:
        return not self.refusals

    @property
    def n_skipped(self) -> int:
        return self.n_pairs - len(self.usable_pairs)

    @property
    def problems(self) -> list[str]:
        """Every defect (``file: what -> action``), then every reason for refusal."""
        return [str(i) for i in self.issues] + [f"refused: {r}" for r in self.refusals]

    def format(self, max_per_kind: int = 10) -> str:
        """Readable text report; at most ``max_per_kind`` files listed per kind of defect."""
        name = f" [{self.label}]" if self.label else ""
        lines = [
            f"Data check{name}: {self.n_pairs} pairs ({self.n_noisy} noisy, {self.n_clean} clean files), "
            f"{len(self.usable_pairs)} usable, {self.n_skipped} skipped"
        ]
        if self.durations:
            d = self.durations
            lines.append(
                f"  durations (headers, usable pairs): min {d['min']:.2f} s, mean {d['mean']:.2f} s, "
                f"max {d['max']:.2f} s"
            )
        if self.correlation is None:
            lines.append("  noisy/clean correlation: not measured (no readable pairs)")
        else:
            lines.append(
                f"  noisy/clean correlation of {len(self.correlation_files)} aligned first-"
                f"{self.crop_seconds:g} s crops: {self.correlation:.3f} (refused below {self.min_corr:g}); "
                f"{len(self.low_corr_files)} of them below {self.min_corr:g} (refused above "
                f"{self.max_low_corr_fraction:.0%})"
            )
        n_nonfinite = sum(i.kind == "non_finite" for i in self.issues)
        lines.append(
            f"  non-finite scan: {self.float_files_checked} float files decoded (integer PCM cannot hold "
            f"NaN/Inf), {n_nonfinite} with NaN/Inf skipped"
        )
        n_silent = sum(i.kind == "silent_reference" for i in self.issues)
        lines.append(
            f"  silence scan: {self.clean_files_scanned} clean references decoded, {n_silent} silent "
            f"(pair skipped)"
        )
        if self.issues:
            lines.append(f"  defects ({len(self.issues)}):")
            by_kind: dict[str, list[DataIssue]] = {}
            for issue in self.issues:
                by_kind.setdefault(issue.kind, []).append(issue)
            for kind, items in by_kind.items():
                actions = Counter(i.action for i in items)
                how = ", ".join(f"{a} {n}" for a, n in actions.items())
                lines.append(f"    {kind}: {len(items)} ({how})")
                lines.extend(f"      {i}" for i in items[:max_per_kind])
                if len(items) > max_per_kind:
                    lines.append(f"      ... and {len(items) - max_per_kind} more")
        else:
            lines.append("  defects: none")
        if self.ok:
            lines.append("  verdict: USABLE")
        else:
            lines.append("  verdict: REFUSED: " + "; ".join(self.refusals))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready summary (file names relative to the dataset root)."""
        return {
            "label": self.label,
            "ok": self.ok,
            "sample_rate": self.sample_rate,
            "n_noisy": self.n_noisy,
            "n_clean": self.n_clean,
            "n_pairs": self.n_pairs,
            "n_usable": len(self.usable_pairs),
            "n_skipped": self.n_skipped,
            "durations": self.durations,
            "correlation": self.correlation,
            "correlation_files": list(self.correlation_files),
            "min_corr": self.min_corr,
            "low_corr_files": list(self.low_corr_files),
            "max_low_corr_fraction": self.max_low_corr_fraction,
            "float_files_checked": self.float_files_checked,
            "clean_files_scanned": self.clean_files_scanned,
            "issues": [
                {"file": i.file, "kind": i.kind, "detail": i.detail, "action": i.action} for i in self.issues
            ],
            "refusals": list(self.refusals),
        }

    def raise_if_refused(self) -> None:
        """Raise ``DataError`` listing every reason when the data is refused."""
        if not self.ok:
            name = f" [{self.label}]" if self.label else ""
            raise DataError(f"data check refused{name}: " + "; ".join(self.refusals))


def _dataset_name(path: Path) -> str:
    """``y_train/0012.wav``: the file under its wav folder, as users see it in the dataset."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}"


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two equal-length signals; None when either is constant."""
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return None if den == 0.0 else float((a * b).sum() / den)


def _scan_samples(path: Path, info: AudioInfo, block_seconds: float = 30.0) -> tuple[int, float]:
    """(non-finite samples, RMS of the finite samples) of the whole of ``path``, read in blocks.

    At the file's own rate, downmixed. Raises ``AudioReadError`` naming the file when its body
    cannot be decoded.
    """
    block = max(1, int(block_seconds * info.sample_rate))
    count, sum_sq, n = 0, 0.0, 0
    for offset in range(0, info.frames, block):
        x = load_audio(path, info.sample_rate, offset=offset, frames=block).numpy()
        finite = np.isfinite(x)
        count += int((~finite).sum())
        good = x[finite].astype(np.float64)
        sum_sq += float((good * good).sum())
        n += int(good.size)
        if x.shape[0] < block:  # the body ended (possibly before the header said)
            break
    return count, (float(np.sqrt(sum_sq / n)) if n else 0.0)


def _dbfs(rms: float) -> float:
    return 20.0 * float(np.log10(rms)) if rms > 0 else float("-inf")


def _seconds_text(frames: int, rate: int) -> str:
    return f"{frames / rate:.3f} s" if rate else "0 s"


@dataclass
class _KeptPair:
    """A pair whose headers allow training on it; ``usable``: samples at the target rate."""

    noisy: Path
    clean: Path
    usable: int
    noisy_info: AudioInfo
    clean_info: AudioInfo


@dataclass
class _CorrelationScan:
    """The correlation of the sampled pairs' aligned crops (``_correlate_crops``)."""

    values: list[float] = field(default_factory=list)  # one per sampled pair that is not constant
    files: list[str] = field(default_factory=list)  # noisy names of the sampled pairs
    low_files: list[str] = field(default_factory=list)  # those below min_corr
    low: set[int] = field(default_factory=set)  # indices into the kept pairs, below min_corr
    n_identical: int = 0  # sampled pairs whose noisy crop equals the clean crop sample for sample

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.values)) if self.values else None


def _read_header(path: Path, sample_rate: int, crop: int, issues: list[DataIssue]) -> AudioInfo | None:
    """``path``'s header, with its rate and channel defects appended to ``issues``; None (and an
    ``unreadable`` defect with the decoder's own reason) when it cannot be read."""
    name = _dataset_name(path)
    try:
        info = audio_info(path)
    except AudioReadError as e:
        reason = e.reason
        try:  # a second opinion from the decoder, for its own reason
            load_audio(path, sample_rate, frames=min(crop, sample_rate))
        except (AudioReadError, ValueError) as e2:
            reason = getattr(e2, "reason", str(e2))
        issues.append(DataIssue(name, "unreadable", f"unreadable ({reason})", "skip"))
        return None
    if info.sample_rate != sample_rate:
        issues.append(DataIssue(name, "sample_rate", f"sample rate {info.sample_rate}, expected {sample_rate}", "resample"))
    if info.channels != 1:
        issues.append(DataIssue(name, "channels", f"{info.channels} channels, expected mono", "downmix"))
    return info


def _scan_headers(
    pairing, sample_rate: int, min_seconds: float, crop_seconds: float, issues: list[DataIssue]
) -> list[_KeptPair]:
    """The pairs whose headers allow training on them; every header defect goes to ``issues``."""
    crop = int(round(crop_seconds * sample_rate))
    min_len = int(round(min_seconds * sample_rate))
    kept: list[_KeptPair] = []
    for noisy, clean in pairing.pairs:
        # Both headers are read (and their defects reported) before the pair is judged.
        n_i = _read_header(noisy, sample_rate, crop, issues)
        c_i = _read_header(clean, sample_rate, crop, issues)
        if n_i is None or c_i is None:
            continue
        pair_name = _dataset_name(noisy)
        if n_i.sample_rate != c_i.sample_rate:
            issues.append(DataIssue(pair_name, "pair_rate", f"noisy {n_i.sample_rate} Hz but clean {c_i.sample_rate} Hz", "resample"))
        if n_i.channels != c_i.channels:
            issues.append(DataIssue(pair_name, "pair_channels", f"noisy {n_i.channels} channels but clean {c_i.channels}", "downmix"))
        n_len = -(-n_i.frames * sample_rate // n_i.sample_rate) if n_i.sample_rate else 0
        c_len = -(-c_i.frames * sample_rate // c_i.sample_rate) if c_i.sample_rate else 0
        usable = min(n_len, c_len)
        if usable < min_len:
            issues.append(
                DataIssue(pair_name, "too_short", f"{usable / sample_rate:.3f} s, shorter than {min_seconds:g} s", "skip")
            )
            continue
        # Lengths compared in seconds at the files' own rates: one source sample or less apart
        # is the same length (a 44.1 kHz and a 16 kHz file of one recording round differently
        # when converted to samples at sample_rate; that is not a defect).
        gap = abs(n_i.frames * c_i.sample_rate - c_i.frames * n_i.sample_rate)
        if n_i.sample_rate and c_i.sample_rate and gap > max(n_i.sample_rate, c_i.sample_rate):
            n_s = _seconds_text(n_i.frames, n_i.sample_rate)
            c_s = _seconds_text(c_i.frames, c_i.sample_rate)
            if n_s == c_s:  # under a millisecond apart: the seconds alone would read equal
                n_s += f" ({n_i.frames} samples at {n_i.sample_rate} Hz)"
                c_s += f" ({c_i.frames} samples at {c_i.sample_rate} Hz)"
            issues.append(
                DataIssue(
                    pair_name, "length_mismatch",
                    f"noisy {n_s} but clean {c_s}: crops use the first {usable / sample_rate:.3f} s",
                    "trim",
                )
            )
        if usable < crop:
            issues.append(DataIssue(pair_name, "short_crop", f"{usable / sample_rate:.3f} s, shorter than the {crop_seconds:g} s crop", "pad"))
        kept.append(_KeptPair(noisy, clean, usable, n_i, c_i))
    return kept


def _scan_whole_files(
    kept: list[_KeptPair], silence_dbfs: float, issues: list[DataIssue]
) -> tuple[set[int], int, int]:
    """Decode whole: every clean reference (a silent one cannot be scored by PESQ and teaches
    the model to output silence) and every float noisy file (only float files can hold NaN/Inf,
    so integer PCM noisy files are not decoded).

    Returns (indices of the pairs dropped, float files decoded, clean files decoded).
    """
    dropped: set[int] = set()
    float_checked = clean_scanned = 0
    for k, pair in enumerate(kept):
        for role, path, info in (("noisy", pair.noisy, pair.noisy_info), ("clean", pair.clean, pair.clean_info)):
            is_float = info.subtype in AUDIO_FLOAT_SUBTYPES
            if role == "noisy" and not is_float:
                continue
            float_checked += is_float
            clean_scanned += role == "clean"
            try:
                bad_count, rms = _scan_samples(path, info)
            except AudioReadError as e:
                issues.append(DataIssue(_dataset_name(path), "unreadable", f"unreadable ({e.reason})", "skip"))
                dropped.add(k)
                break
            if bad_count:
                issues.append(
                    DataIssue(_dataset_name(path), "non_finite",
                              f"{bad_count} non-finite samples ({info.subtype} wav)", "skip")
                )
                dropped.add(k)
            elif role == "clean" and _dbfs(rms) < silence_dbfs:
                level = "digital silence" if rms == 0 else f"RMS {_dbfs(rms):.1f} dBFS"
                issues.append(
                    DataIssue(_dataset_name(path), "silent_reference",
                              f"clean reference is {level} (below {silence_dbfs:g} dBFS): PESQ "
                              f"cannot score it and it teaches the model to output silence", "skip")
                )
                dropped.add(k)
    return dropped, float_checked, clean_scanned


def _correlate_crops(
    kept: list[_KeptPair], dropped: set[int], sample_rate: int, crop_seconds: float,
    n_corr: int, min_corr: float, seed: int, issues: list[DataIssue],
) -> _CorrelationScan:
    """Correlate the first crop of up to ``n_corr`` randomly chosen pairs, noisy against clean.

    Decodes a few pairs: the alignment correlation needs the samples (and a file whose header
    does not give its subtype is checked for non-finite samples here, in its crop). A pair that
    turns out unreadable or non-finite is added to ``dropped``.
    """
    crop = int(round(crop_seconds * sample_rate))
    order = np.random.default_rng(seed).permutation(len(kept)).tolist()
    scan = _CorrelationScan()
    for k in order:
        if len(scan.files) >= n_corr:
            break
        if k in dropped:
            continue
        noisy, clean = kept[k].noisy, kept[k].clean
        n = min(crop, kept[k].usable)
        try:
            a = load_audio(noisy, sample_rate, offset=0, frames=n).numpy().astype(np.float64)
            b = load_audio(clean, sample_rate, offset=0, frames=n).numpy().astype(np.float64)
        except AudioReadError as e:
            issues.append(DataIssue(_dataset_name(Path(e.path)), "unreadable", f"unreadable ({e.reason})", "skip"))
            dropped.add(k)
            continue
        bad = [(p, x) for p, x in ((noisy, a), (clean, b)) if not np.isfinite(x).all()]
        for p, x in bad:
            issues.append(
                DataIssue(_dataset_name(p), "non_finite", f"{int((~np.isfinite(x)).sum())} non-finite samples in the first {n / sample_rate:g} s", "skip")
            )
        if bad:
            dropped.add(k)
            continue
        m = min(a.shape[0], b.shape[0])
        scan.n_identical += bool(m) and np.array_equal(a[:m], b[:m])
        r = _pearson(a[:m], b[:m])
        scan.files.append(_dataset_name(noisy))
        if r is None:
            continue
        scan.values.append(r)
        if r < min_corr:
            scan.low_files.append(_dataset_name(noisy))
            issues.append(
                DataIssue(
                    _dataset_name(noisy), "low_correlation",
                    f"correlation {r:.3f} between {_dataset_name(noisy)} and {_dataset_name(clean)} "
                    f"(first {n / sample_rate:g} s) is below {min_corr:g}: misaligned or mismatched",
                    "skip",
                )
            )
            scan.low.add(k)
    return scan


def _refusals(
    pairing, n_defective_ok: int, corr: _CorrelationScan, min_corr: float,
    max_low_corr_fraction: float, max_unusable_fraction: float,
) -> list[str]:
    """Every reason to refuse the data (none: usable).

    The refusals for "no usable pairs" and "too many unusable" count defects only;
    low-correlation pairs have their own rule, so a misaligned sample is refused once, for its
    correlation.
    """
    refusals: list[str] = []
    n_pairs = len(pairing.pairs)
    correlation = corr.mean
    if n_pairs == 0:
        refusals.append(
            f"no noisy/clean pairs ({len(pairing.unpaired_noisy)} noisy and {len(pairing.unpaired_clean)} clean files share no names)"
        )
    elif not n_defective_ok:
        refusals.append(f"none of the {n_pairs} pairs is usable")
    if correlation is not None and correlation < min_corr:
        refusals.append(
            f"noisy/clean correlation {correlation:.3f} is below {min_corr:g}: the pairs look misaligned "
            f"or mismatched (aligned pairs of this dataset measure about 0.86)"
        )
    elif corr.values and len(corr.low_files) / len(corr.values) > max_low_corr_fraction:
        n_low, n_sampled = len(corr.low_files), len(corr.values)
        refusals.append(
            f"{n_low} of {n_sampled} sampled pairs have a noisy/clean correlation below "
            f"{min_corr:g} ({n_low / n_sampled:.0%}, more than {max_low_corr_fraction:.0%}; "
            f"mean {correlation:.3f}): part of the data looks misaligned or mismatched: "
            + ", ".join(corr.low_files)
        )
    if corr.files and corr.n_identical == len(corr.files):
        refusals.append(
            f"the noisy and clean files are identical in all {corr.n_identical} sampled pairs: the "
            f"noisy folder {pairing.noisy_dir} holds clean speech (or both are one folder)"
        )
    if corr.files and correlation is None:
        refusals.append("every file sampled for the correlation is silent")
    candidates = n_pairs + len(pairing.unpaired_noisy)
    unusable = (n_pairs - n_defective_ok) + len(pairing.unpaired_noisy)
    if candidates and unusable / candidates > max_unusable_fraction and n_defective_ok:
        refusals.append(
            f"{unusable} of {candidates} noisy files are unusable ({unusable / candidates:.0%}, "
            f"more than {max_unusable_fraction:.0%})"
        )
    return refusals


def _durations(seconds: list[float]) -> dict[str, float] | None:
    """min/mean/max of ``seconds``; None when empty."""
    if not seconds:
        return None
    secs = np.asarray(seconds, dtype=np.float64)
    return {"min": float(secs.min()), "mean": float(secs.mean()), "max": float(secs.max())}


def check_pairs(
    pairing,
    sample_rate: int = SAMPLE_RATE,
    min_seconds: float = 0.5,
    n_corr: int = 8,
    crop_seconds: float = 3.0,
    min_corr: float = 0.3,
    seed: int = 0,
    max_unusable_fraction: float = 0.1,
    label: str = "",
    max_low_corr_fraction: float = 0.2,
    silence_dbfs: float = -60.0,
) -> DataReport:
    """Check a ``Pairing`` (from ``pair_files``) and report every defect and its handling.

    Handling: another sample rate -> resample; several channels -> downmix; noisy and clean of
    different lengths -> trim to the shorter; shorter than the crop -> pad; unreadable, shorter
    than ``min_seconds``, non-finite (every float-subtype file is decoded whole to look), or a
    sampled pair whose correlation is below ``min_corr`` -> skip the pair; a clean reference whose
    whole-file RMS is below ``silence_dbfs`` (digital silence, or near it) -> skip the pair
    (every clean file is decoded whole for this); unpaired files -> skip.
    Refused when there are no usable pairs, when the mean correlation of up to ``n_corr`` aligned
    crops (the first ``crop_seconds`` of randomly chosen pairs) is below ``min_corr``, when more
    than ``max_low_corr_fraction`` of those sampled pairs are below ``min_corr``, or when more than
    ``max_unusable_fraction`` of the noisy files cannot be used.
    """
    issues: list[DataIssue] = []
    issues += [DataIssue(_dataset_name(p), "unpaired", "no clean file of that name", "skip") for p in pairing.unpaired_noisy]
    issues += [DataIssue(_dataset_name(p), "unpaired", "no noisy file of that name", "skip") for p in pairing.unpaired_clean]
    kept = _scan_headers(pairing, sample_rate, min_seconds, crop_seconds, issues)
    dropped, float_checked, clean_scanned = _scan_whole_files(kept, silence_dbfs, issues)
    corr = _correlate_crops(kept, dropped, sample_rate, crop_seconds, n_corr, min_corr, seed, issues)
    # Usable: neither dropped as defective nor as a low-correlation pair.
    usable = [pair for k, pair in enumerate(kept) if k not in dropped | corr.low]
    n_pairs = len(pairing.pairs)
    return DataReport(
        label=label,
        sample_rate=sample_rate,
        n_noisy=n_pairs + len(pairing.unpaired_noisy),
        n_clean=n_pairs + len(pairing.unpaired_clean),
        n_pairs=n_pairs,
        usable_pairs=[(pair.noisy, pair.clean) for pair in usable],
        issues=issues,
        durations=_durations([pair.usable / sample_rate for pair in usable]),
        correlation=corr.mean,
        correlation_files=corr.files,
        min_corr=min_corr,
        crop_seconds=crop_seconds,
        max_unusable_fraction=max_unusable_fraction,
        refusals=_refusals(pairing, len(kept) - len(dropped), corr, min_corr,
                           max_low_corr_fraction, max_unusable_fraction),
        low_corr_files=corr.low_files,
        max_low_corr_fraction=max_low_corr_fraction,
        float_files_checked=float_checked,
        clean_files_scanned=clean_scanned,
    )
