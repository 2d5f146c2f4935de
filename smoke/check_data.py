"""Check a speech-enhancement dataset before spending GPU hours on it.

    python smoke/check_data.py ROOT [--work-dir W] [--min-corr X] [--max-low-corr F]

Finds the four wav folders under ROOT (archives are extracted into W, never into ROOT), checks
the train and test pairs, prints the reports. Exit code 0: usable; 1: refused; 2: not found.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from templates.data import DatasetNotFoundError, find_dataset, pair_files
from templates.datacheck import DataReport, check_pairs

EXIT_OK, EXIT_REFUSED, EXIT_NOT_FOUND = 0, 1, 2


def default_work_dir() -> Path:
    """A cache folder outside the dataset, reused between runs so archives are extracted once."""
    return Path(tempfile.gettempdir()) / "se-toolkit-check-data"


def check_dataset(root, work_dir=None, **check_kw) -> list[DataReport]:
    """Reports for the train and test pairs of the dataset under ``root``."""
    layout = find_dataset(root, work_dir if work_dir is not None else default_work_dir())
    reports = []
    for label, noisy, clean in (
        ("train", layout.train_noisy, layout.train_clean),
        ("test", layout.test_noisy, layout.test_clean),
    ):
        reports.append(check_pairs(pair_files(noisy, clean), label=label, **check_kw))
    return reports


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="folder holding the dataset (any depth), e.g. /kaggle/input")
    ap.add_argument("--work-dir", type=Path, default=None, help="where archives are extracted (default: a temp cache)")
    ap.add_argument("--min-corr", type=float, default=0.3, help="refuse below this noisy/clean correlation")
    ap.add_argument("--max-low-corr", type=float, default=0.2,
                    help="refuse above this fraction of sampled pairs below --min-corr")
    ap.add_argument("--sample-rate", type=int, default=16000)
    ap.add_argument("--min-seconds", type=float, default=0.5, help="skip pairs shorter than this")
    ap.add_argument("--max-unusable", type=float, default=0.1, help="refuse above this fraction of unusable files")
    args = ap.parse_args(argv)
    try:
        reports = check_dataset(
            args.root,
            args.work_dir,
            sample_rate=args.sample_rate,
            min_corr=args.min_corr,
            min_seconds=args.min_seconds,
            max_unusable_fraction=args.max_unusable,
            max_low_corr_fraction=args.max_low_corr,
        )
    except DatasetNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_NOT_FOUND
    for r in reports:
        print(r.format())
    return EXIT_OK if all(r.ok for r in reports) else EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
