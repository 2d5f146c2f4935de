"""``kernel-metadata.json``: the push folder's description for the official kaggle client.

Field names follow the client's own ``kernels_push`` (kaggle/api/kaggle_api_extended.py, 2.x):
it reads ``id``, ``title``, ``code_file``, ``language``, ``kernel_type``, ``is_private``,
``enable_gpu``, ``enable_tpu``, ``enable_internet``, ``dataset_sources``, ``competition_sources``,
``kernel_sources``, ``model_sources`` and ``machine_shape`` (sent as the request's machine shape;
a ``--accelerator`` given to the client overrides it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from builders.spec import DATASET_SOURCE, ModelSpec

PLACEHOLDER_USER = "your-kaggle-username"
DEFAULT_ACCELERATOR = "NvidiaTeslaT4"  # two T4s on Kaggle
KNOWN_ACCELERATORS = ("NvidiaTeslaT4", "NvidiaTeslaP100", "NvidiaL4", "NvidiaL4X1", "NvidiaH100",
                      "NvidiaRtxPro6000", "TpuV6E8", "None")
P100_WARNING = (
    "warning: NvidiaTeslaP100 runs Kaggle images whose PyTorch has no sm_60 kernels, so the first "
    "CUDA call fails (the notebook's environment check stops it at once); use NvidiaTeslaT4"
)


def accelerator_warning(accelerator: str) -> str | None:
    if accelerator == "NvidiaTeslaP100":
        return P100_WARNING
    if accelerator not in KNOWN_ACCELERATORS:
        return (f"warning: accelerator {accelerator!r} is not one this toolkit knows "
                f"({', '.join(KNOWN_ACCELERATORS)}); Kaggle may refuse it")
    return None


def kaggle_username(env: dict[str, str] | None = None, home: Path | None = None) -> str:
    """The Kaggle owner: ``KAGGLE_USERNAME``, else ``~/.kaggle/kaggle.json``'s ``username``.

    Only the ``username`` field is read; the key is never looked at, printed or stored.
    Falls back to :data:`PLACEHOLDER_USER`, which a push refuses.
    """
    env = os.environ if env is None else env
    if env.get("KAGGLE_USERNAME"):
        return env["KAGGLE_USERNAME"]
    config_dir = Path(env["KAGGLE_CONFIG_DIR"]) if env.get("KAGGLE_CONFIG_DIR") else \
        (Path.home() if home is None else home) / ".kaggle"
    path = config_dir / "kaggle.json"
    try:
        username = json.loads(path.read_text(encoding="utf-8")).get("username")
    except (OSError, ValueError, AttributeError):
        return PLACEHOLDER_USER
    return username if isinstance(username, str) and username else PLACEHOLDER_USER


def kernel_metadata(
    spec: ModelSpec,
    *,
    user: str,
    accelerator: str = DEFAULT_ACCELERATOR,
    private: bool = True,
) -> dict[str, Any]:
    return {
        "id": f"{user}/{spec.slug}",
        "title": spec.title,
        "code_file": spec.notebook_file,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": private,
        "enable_gpu": accelerator not in ("None", ""),
        "enable_tpu": accelerator.startswith("Tpu"),
        # The first code cell pip-installs pesq, pystoi and py7zr.
        "enable_internet": True,
        "dataset_sources": [DATASET_SOURCE],
        "competition_sources": [],
        "kernel_sources": [],
        "model_sources": [],
        "machine_shape": accelerator,
    }


def metadata_text(meta: dict[str, Any]) -> str:
    return json.dumps(meta, indent=1, sort_keys=True) + "\n"


def write_metadata(meta: dict[str, Any], folder: Path) -> Path:
    path = Path(folder) / "kernel-metadata.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(metadata_text(meta), encoding="utf-8")
    return path
