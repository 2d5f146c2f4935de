"""Build the CRN (convolutional recurrent network) notebook: ``python builders/crn.py [--push] ...``."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builders.cli import main as cli_main  # noqa: E402
from render.spec import ModelSpec  # noqa: E402

SPEC = ModelSpec(
    name="crn",
    title="CRN v3 Aligned Speech Enhancement",
    slug="crn-v3-aligned-speech-enhancement",
    model_module="templates.models.crn",
    description=(
        "Convolutional recurrent mask estimator on the STFT magnitude (conv encoder, an LSTM over "
        "time per frequency position, transposed-conv decoder) trained on "
        "aligned noisy/clean crops of LibriSpeech+noise, evaluated with PESQ-wb, STOI and SI-SDR."
    ),
    parameters={"BATCH_SIZE": 16, "EPOCHS": 30, "LR": 1e-3, "CROP_SECONDS": 3.0,
                "WARMUP_EPOCHS": 0},
    smoke_model_kwargs={"enc_channels": (8, 16, 16), "lstm_hidden": 16,
                        "dec_channels": (16, 8, 8)},
)


def main(argv: list[str] | None = None) -> int:
    return cli_main(SPEC, argv)


if __name__ == "__main__":
    sys.exit(main())
