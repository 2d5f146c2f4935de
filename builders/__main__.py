"""``python -m builders NAME [options]``: render, push, watch or fetch the notebook of any row of
the model table (``templates/models/catalog.py``), with the options of ``builders/<name>.py``.
A new model needs a module and a row, no builder script.
"""

from __future__ import annotations

import sys

from builders.cli import main_for
from templates.models.catalog import catalog_names


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    names = catalog_names()
    if argv[:1] in (["-h"], ["--help"]):
        print(f"usage: python -m builders NAME [options] (NAME: {', '.join(names)}); "
              f"python -m builders NAME --help lists the options")
        return 0
    if not argv or argv[0] not in names:
        given = f"unknown model {argv[0]!r}; " if argv and not argv[0].startswith("-") else ""
        print(f"usage: python -m builders NAME [options] (NAME: {', '.join(names)}; "
              f"options: python -m builders NAME --help)", file=sys.stderr)
        if given:
            print(f"error: {given}the models are the rows of templates/models/catalog.py",
                  file=sys.stderr)
        return 2
    return main_for(argv[0], argv[1:], prog=f"python -m builders {argv[0]}")


if __name__ == "__main__":
    sys.exit(main())
