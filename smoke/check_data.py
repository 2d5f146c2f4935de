"""Check a speech-enhancement dataset before spending GPU hours on it.

    python smoke/check_data.py ROOT [--work-dir W] [--min-corr X] [--max-low-corr F]
                               [--dataset vbdemand]

Finds the four wav folders under ROOT (archives are extracted into W, never into ROOT), checks
the train and test pairs, prints the reports. Exit code 0: usable; 1: refused; 2: not found,
an archive that cannot be extracted, or an option out of range (one line naming it).
"""

import argparse
import math
import sys
import tempfile
from pathlib import Path

from compat.sample_rate import SAMPLE_RATE
from templates.data import DatasetError, find_dataset, pair_files
from templates.datacheck import DataReport, check_pairs
from templates.datasets import DATASETS, DEFAULT_DATASET

EXIT_OK, EXIT_REFUSED, EXIT_NOT_FOUND = 0, 1, 2


def default_work_dir() -> Path:
    """A cache folder outside the dataset, reused between runs so archives are extracted once."""
    return Path(tempfile.gettempdir()) / "se-toolkit-check-data"


def check_dataset(root, work_dir=None, dataset: str = DEFAULT_DATASET,
                  **check_kw) -> list[DataReport]:
    """Reports for the train and test pairs of the dataset under ``root`` (``dataset``: a row of
    ``templates.datasets.DATASETS`` naming its folders)."""
    layout = find_dataset(root, work_dir if work_dir is not None else default_work_dir(), dataset)
    reports = []
    for label, noisy, clean in (
        ("train", layout.train_noisy, layout.train_clean),
        ("test", layout.test_noisy, layout.test_clean),
    ):
        reports.append(check_pairs(pair_files(noisy, clean), label=label, **check_kw))
    return reports


def option_problems(args) -> list[str]:
    """One line per option value out of range, checked before the dataset is touched."""
    lines = []

    def fraction(name: str, value: float, low_open: bool = False) -> None:
        if not (math.isfinite(value) and (0 < value if low_open else 0 <= value) and value <= 1):
            lines.append(f"--{name} {value}: must be a fraction in {'(0' if low_open else '[0'}, 1]")

    if not (math.isfinite(args.min_corr) and -1 <= args.min_corr <= 1):
        lines.append(f"--min-corr {args.min_corr}: a correlation is between -1 and 1")
    fraction("max-low-corr", args.max_low_corr)
    fraction("max-unusable", args.max_unusable)
    if args.sample_rate < 1:
        lines.append(f"--sample-rate {args.sample_rate}: must be a positive number of Hz")
    if not math.isfinite(args.min_seconds) or args.min_seconds < 0:
        lines.append(f"--min-seconds {args.min_seconds}: must be a finite number >= 0")
    if args.work_dir is not None and args.work_dir.exists() and not args.work_dir.is_dir():
        lines.append(f"--work-dir {args.work_dir}: is a file; give a folder for extracted archives")
    if args.root.exists() and not args.root.is_dir():
        lines.append(f"{args.root}: is a file; give the folder holding the dataset")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="folder holding the dataset (any depth), e.g. /kaggle/input")
    ap.add_argument("--work-dir", type=Path, default=None, help="where archives are extracted (default: a temp cache)")
    ap.add_argument("--min-corr", type=float, default=0.3, help="refuse below this noisy/clean correlation")
    ap.add_argument("--max-low-corr", type=float, default=0.2,
                    help="refuse above this fraction of sampled pairs below --min-corr")
    ap.add_argument("--dataset", default=DEFAULT_DATASET, choices=sorted(DATASETS),
                    help="folder names of this row of templates/datasets.py (default libri)")
    ap.add_argument("--sample-rate", type=int, default=SAMPLE_RATE)
    ap.add_argument("--min-seconds", type=float, default=0.5, help="skip pairs shorter than this")
    ap.add_argument("--max-unusable", type=float, default=0.1, help="refuse above this fraction of unusable files")
    args = ap.parse_args(argv)
    problems = option_problems(args)
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_NOT_FOUND
    try:
        reports = check_dataset(
            args.root,
            args.work_dir,
            dataset=args.dataset,
            sample_rate=args.sample_rate,
            min_corr=args.min_corr,
            min_seconds=args.min_seconds,
            max_unusable_fraction=args.max_unusable,
            max_low_corr_fraction=args.max_low_corr,
        )
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except OSError as e:  # e.g. a work folder that cannot be written
        print(f"error: {e.filename or args.work_dir}: {e.strerror or e}", file=sys.stderr)
        return EXIT_NOT_FOUND
    for r in reports:
        print(r.format())
    return EXIT_OK if all(r.ok for r in reports) else EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
