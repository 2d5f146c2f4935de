"""Check a noisy/clean pairing before training on it, and say what will be done about each defect.

Cheap checks run on every file from its header (rate, channels, length); checks that need the
samples (non-finite values, and the noisy/clean correlation that exposes misaligned pairs) decode
only the few pairs sampled for the correlation, plus a decode attempt on any file whose header
cannot be read (to report the decoder's own reason). A NaN in a file outside that sample is found
at training time, where the loss turns non-finite; checking every file would decode the whole
dataset, which is what this check avoids.

The seed measured a correlation of 0.858 on correctly aligned first-3-s crops; crops from
different times of the same utterance, or from another file, are near 0.
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compat.audio import AudioReadError, audio_info, load_audio

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
                f"{self.crop_seconds:g} s crops: {self.correlation:.3f} (refused below {self.min_corr:g})"
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


def _datacheck_name(path: Path) -> str:
    """``y_train/0012.wav``: the file under its wav folder, as users see it in the dataset."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}"


def _datacheck_corr(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two equal-length signals; None when either is constant."""
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return None if den == 0.0 else float((a * b).sum() / den)


def check_pairs(
    pairing,
    sample_rate: int = 16000,
    min_seconds: float = 0.5,
    n_corr: int = 8,
    crop_seconds: float = 3.0,
    min_corr: float = 0.3,
    seed: int = 0,
    max_unusable_fraction: float = 0.1,
    label: str = "",
) -> DataReport:
    """Check a ``Pairing`` (from ``pair_files``) and report every defect and its handling.

    Handling: another sample rate -> resample; several channels -> downmix; noisy and clean of
    different lengths -> trim to the shorter; shorter than the crop -> pad; unreadable, shorter
    than ``min_seconds`` or non-finite -> skip the pair; unpaired files -> skip. Refused when there
    are no usable pairs, when the mean correlation of up to ``n_corr`` aligned crops (the first
    ``crop_seconds`` of randomly chosen pairs) is below ``min_corr``, or when more than
    ``max_unusable_fraction`` of the noisy files cannot be used.
    """
    issues: list[DataIssue] = []
    issues += [DataIssue(_datacheck_name(p), "unpaired", "no clean file of that name", "skip") for p in pairing.unpaired_noisy]
    issues += [DataIssue(_datacheck_name(p), "unpaired", "no noisy file of that name", "skip") for p in pairing.unpaired_clean]
    crop = int(round(crop_seconds * sample_rate))
    min_len = int(round(min_seconds * sample_rate))
    kept: list[tuple[Path, Path, int]] = []  # (noisy, clean, usable samples at sample_rate)

    for noisy, clean in pairing.pairs:
        infos = {}
        skip = False
        for role, path in (("noisy", noisy), ("clean", clean)):
            name = _datacheck_name(path)
            try:
                infos[role] = audio_info(path)
            except AudioReadError as e:
                reason = e.reason
                try:  # a second opinion from the decoder, for its own reason
                    load_audio(path, sample_rate, frames=min(crop, sample_rate))
                except (AudioReadError, ValueError) as e2:
                    reason = getattr(e2, "reason", str(e2))
                issues.append(DataIssue(name, "unreadable", f"unreadable ({reason})", "skip"))
                skip = True
                continue
            i = infos[role]
            if i.sample_rate != sample_rate:
                issues.append(DataIssue(name, "sample_rate", f"sample rate {i.sample_rate}, expected {sample_rate}", "resample"))
            if i.channels != 1:
                issues.append(DataIssue(name, "channels", f"{i.channels} channels, expected mono", "downmix"))
        if skip:
            continue
        n_i, c_i = infos["noisy"], infos["clean"]
        pair_name = _datacheck_name(noisy)
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
        if n_len != c_len:
            issues.append(
                DataIssue(
                    pair_name, "length_mismatch",
                    f"noisy {n_len / sample_rate:.3f} s but clean {c_len / sample_rate:.3f} s: "
                    f"crops use the first {usable / sample_rate:.3f} s",
                    "trim",
                )
            )
        if usable < crop:
            issues.append(DataIssue(pair_name, "short_crop", f"{usable / sample_rate:.3f} s, shorter than the {crop_seconds:g} s crop", "pad"))
        kept.append((noisy, clean, usable))

    # Decode a few pairs: non-finite samples and the alignment correlation need the samples.
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(kept)).tolist()
    dropped: set[int] = set()
    corrs: list[float] = []
    corr_files: list[str] = []
    n_identical = 0  # sampled pairs whose noisy crop equals the clean crop sample for sample
    for k in order:
        if len(corr_files) >= n_corr:
            break
        noisy, clean, usable = kept[k]
        n = min(crop, usable)
        try:
            a = load_audio(noisy, sample_rate, offset=0, frames=n).numpy().astype(np.float64)
            b = load_audio(clean, sample_rate, offset=0, frames=n).numpy().astype(np.float64)
        except AudioReadError as e:
            issues.append(DataIssue(_datacheck_name(Path(e.path)), "unreadable", f"unreadable ({e.reason})", "skip"))
            dropped.add(k)
            continue
        bad = [p for p, x in ((noisy, a), (clean, b)) if not np.isfinite(x).all()]
        for p in bad:
            x = a if p == noisy else b
            issues.append(
                DataIssue(_datacheck_name(p), "non_finite", f"{int((~np.isfinite(x)).sum())} non-finite samples in the first {n / sample_rate:g} s", "skip")
            )
        if bad:
            dropped.add(k)
            continue
        m = min(a.shape[0], b.shape[0])
        n_identical += bool(m) and np.array_equal(a[:m], b[:m])
        r = _datacheck_corr(a[:m], b[:m])
        corr_files.append(_datacheck_name(noisy))
        if r is not None:
            corrs.append(r)
    usable_pairs = [(n, c) for k, (n, c, _) in enumerate(kept) if k not in dropped]
    usable_lens = [u for k, (_, _, u) in enumerate(kept) if k not in dropped]
    durations = None
    if usable_lens:
        secs = np.asarray(usable_lens, dtype=np.float64) / sample_rate
        durations = {"min": float(secs.min()), "mean": float(secs.mean()), "max": float(secs.max())}
    correlation = float(np.mean(corrs)) if corrs else None

    refusals: list[str] = []
    n_pairs = len(pairing.pairs)
    if n_pairs == 0:
        refusals.append(
            f"no noisy/clean pairs ({len(pairing.unpaired_noisy)} noisy and {len(pairing.unpaired_clean)} clean files share no names)"
        )
    elif not usable_pairs:
        refusals.append(f"none of the {n_pairs} pairs is usable")
    if correlation is not None and correlation < min_corr:
        refusals.append(
            f"noisy/clean correlation {correlation:.3f} is below {min_corr:g}: the pairs look misaligned "
            f"or mismatched (aligned pairs of this dataset measure about 0.86)"
        )
    if corr_files and n_identical == len(corr_files):
        refusals.append(
            f"the noisy and clean files are identical in all {n_identical} sampled pairs: the "
            f"noisy folder {pairing.noisy_dir} holds clean speech (or both are one folder)"
        )
    if corr_files and correlation is None:
        refusals.append("every file sampled for the correlation is silent")
    candidates = n_pairs + len(pairing.unpaired_noisy)
    unusable = (n_pairs - len(usable_pairs)) + len(pairing.unpaired_noisy)
    if candidates and unusable / candidates > max_unusable_fraction and usable_pairs:
        refusals.append(
            f"{unusable} of {candidates} noisy files are unusable ({unusable / candidates:.0%}, "
            f"more than {max_unusable_fraction:.0%})"
        )
    return DataReport(
        label=label,
        sample_rate=sample_rate,
        n_noisy=n_pairs + len(pairing.unpaired_noisy),
        n_clean=n_pairs + len(pairing.unpaired_clean),
        n_pairs=n_pairs,
        usable_pairs=usable_pairs,
        issues=issues,
        durations=durations,
        correlation=correlation,
        correlation_files=corr_files,
        min_corr=min_corr,
        crop_seconds=crop_seconds,
        max_unusable_fraction=max_unusable_fraction,
        refusals=refusals,
    )
