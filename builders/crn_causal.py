"""Build the notebook of the model this file is named after: ``python builders/<name>.py [--push]
...``, the same as ``python -m builders <name>``. The model's facts are its row in
``templates/models/catalog.py``; this script only gives it a name to type.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builders.cli import main_for  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return main_for(Path(__file__).stem, argv)


if __name__ == "__main__":
    sys.exit(main())
