"""``kernel-metadata.json``: the push folder's description for the official kaggle client.

Field names follow the client's own ``kernels_push`` (kaggle 2.2.5,
kaggle/api/kaggle_api_extended.py): it reads ``id``, ``title``, ``code_file``, ``language``,
``kernel_type``, ``is_private``, ``enable_gpu``, ``enable_tpu``, ``enable_internet``,
``dataset_sources``, ``competition_sources``, ``kernel_sources``, ``model_sources``,
``docker_image_pinning_type`` (one of ``valid_push_pinning_types``: "original", "latest"),
``docker_image`` and ``machine_shape`` (sent as the request's machine shape; an ``acc`` given to
the client overrides it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from render.spec import ModelSpec, mounted_dataset_slug
from templates.checkpoint import atomic_write

DEFAULT_ACCELERATOR = "NvidiaTeslaT4"  # GPU T4 x2 on Kaggle
#: GPU machine shapes, from the client's documentation (kaggle-cli docs/kernels.md, "Accelerators
#: available as of Feb 2026"), less the retired P100. Some are limited to competitions or to
#: Kaggle staff; Kaggle's reply to the push says so.
GPU_SHAPES = ("NvidiaTeslaT4", "NvidiaTeslaT4Highmem", "NvidiaTeslaA100", "NvidiaL4", "NvidiaL4X1",
              "NvidiaH100", "NvidiaRtxPro6000")
#: TPU shapes from the same list (and the retired v3/v2 ones): refused, these notebooks are CUDA.
TPU_SHAPES = ("TpuV38", "Tpu1VmV38", "TpuV5E8", "TpuV6E8", "TpuV232", "TpuV2256")
#: kaggle 2.2.5 ``_RETIRED_ACCELERATORS``: a P100 request silently runs on the default T4 x2.
RETIRED_P100 = "NvidiaTeslaP100"
P100_RETIRED_MESSAGE = (
    "NvidiaTeslaP100 is retired on Kaggle: a P100 request runs on NvidiaTeslaT4 (two T4s) "
    "instead (kaggle 2.2.5 warns the same)"
)
PIN_TYPES = ("original", "latest")  # kaggle 2.2.5 KaggleApi.valid_push_pinning_types
_DOCKER_IMAGE_RE = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+@sha256:[0-9a-f]{64}$")


def resolve_accelerator(accelerator: str, *, force: bool = False) -> tuple[str, str | None]:
    """``(machine shape to send, note to print)`` for ``--accelerator``; ``ValueError`` otherwise.

    Only GPU shapes Kaggle offers are sent. The retired P100 becomes T4 x2 only with ``force``
    (that is what Kaggle would run anyway, so the metadata says so); TPU shapes are refused.
    """
    if accelerator in GPU_SHAPES:
        return accelerator, None
    if accelerator == RETIRED_P100:
        if force:
            return DEFAULT_ACCELERATOR, f"{P100_RETIRED_MESSAGE}; --force: using NvidiaTeslaT4"
        raise ValueError(f"{P100_RETIRED_MESSAGE}; choose --accelerator NvidiaTeslaT4, or pass "
                         "--force to push for NvidiaTeslaT4")
    if accelerator in TPU_SHAPES or accelerator.lower().startswith("tpu"):
        raise ValueError(f"accelerator {accelerator!r} is a TPU; these notebooks train with CUDA. "
                         f"Choose one of {', '.join(GPU_SHAPES)}")
    raise ValueError(f"accelerator {accelerator!r} is not a Kaggle GPU machine shape; choose one "
                     f"of {', '.join(GPU_SHAPES)}")


def docker_image_fields(pin_image: str | None, docker_image: str | None) -> dict[str, str]:
    """The metadata fields for ``--pin-image`` / ``--docker-image`` ({} when neither is given).

    ``pin_image`` "original" keeps the image the kernel's first version ran on, "latest" takes
    Kaggle's newest; ``docker_image`` names one image by digest
    (``gcr.io/kaggle-gpu-images/python@sha256:<64 hex>``) and cannot go with "latest".
    """
    fields: dict[str, str] = {}
    if pin_image is not None:
        if pin_image not in PIN_TYPES:
            raise ValueError(f"--pin-image {pin_image!r}: expected one of {', '.join(PIN_TYPES)}")
        fields["docker_image_pinning_type"] = pin_image
    if docker_image is not None:
        if not _DOCKER_IMAGE_RE.match(docker_image):
            raise ValueError(
                f"--docker-image {docker_image!r}: expected an image by digest, "
                "e.g. gcr.io/kaggle-gpu-images/python@sha256:<64 hex digits> (the kernel page's "
                "environment tab, or kaggle kernels pull -m, shows the one a version ran on)")
        if pin_image == "latest":
            raise ValueError("--docker-image names one image; it cannot go with --pin-image latest")
        fields["docker_image"] = docker_image
    return fields


def kernel_metadata(
    spec: ModelSpec,
    *,
    user: str,
    accelerator: str = DEFAULT_ACCELERATOR,
    private: bool = True,
    image: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    kernel_sources: list[str] | None = None,
) -> dict[str, Any]:
    """The metadata for ``spec``; ``image`` is :func:`docker_image_fields`' result, ``params``
    the notebook's parameters (default ``spec.default_parameters()``), whose ``DATASET`` row
    gives the mounted slug.
    ``kernel_sources``: notebook outputs mounted as inputs (``owner/slug`` or
    ``owner/slug/<version>``, the forms the client validates); the notebook's own earlier
    version there is how ``--resume-from`` continues a run."""
    return {
        "id": f"{user}/{spec.slug}",
        "title": spec.title,
        "code_file": spec.notebook_file,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": private,
        "enable_gpu": True,
        "enable_tpu": False,
        # The install section pip-installs what the image lacks (NOTEBOOK_REQUIREMENTS), and
        # a dataset that is not mounted is downloaded with kagglehub.
        "enable_internet": True,
        "dataset_sources": [mounted_dataset_slug(params or spec.default_parameters())],
        "competition_sources": [],
        "kernel_sources": list(kernel_sources or []),
        "model_sources": [],
        "machine_shape": accelerator,
        **(image or {}),
    }


def metadata_text(meta: dict[str, Any]) -> str:
    return json.dumps(meta, indent=1, sort_keys=True) + "\n"


def write_metadata(meta: dict[str, Any], folder: Path) -> Path:
    text = metadata_text(meta)
    # atomic, like the notebook beside it: a failed write never leaves half a push folder
    return atomic_write(Path(folder) / "kernel-metadata.json", lambda fh: fh.write(text),
                        binary=False)


def resume_source(ref: str, version: int) -> str:
    """``owner/slug/<version>``: version ``version``'s output of kernel ``ref`` as an input."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"--resume-from: a kernel version is a number >= 1, got {version!r}")
    return f"{ref}/{version}"
