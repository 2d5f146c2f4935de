"""Build the causal CRN notebook (the streaming model): ``python builders/crn_causal.py [--push]``."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builders.cli import main as cli_main  # noqa: E402
from render.spec import ModelSpec  # noqa: E402

SPEC = ModelSpec(
    name="crn_causal",
    title="Causal CRN Streaming Speech Enhancement",
    slug="causal-crn-streaming-speech-enhancement",
    model_module="templates.models.crn_causal",
    description=(
        "Causal convolutional recurrent mask estimator (causal conv encoder, a one-way LSTM over "
        "time per frequency position): the model that `deploy.streaming` runs one 16 ms hop at a "
        "time with 32 ms algorithmic latency. Trained on aligned noisy/clean crops, evaluated with "
        "PESQ-wb, STOI and SI-SDR."
    ),
    parameters={"BATCH_SIZE": 16, "EPOCHS": 30, "LR": 1e-3, "CROP_SECONDS": 3.0,
                "WARMUP_EPOCHS": 0},
    smoke_model_kwargs={"channels": (8, 16, 16), "hidden": 16},
)


def main(argv: list[str] | None = None) -> int:
    return cli_main(SPEC, argv)


if __name__ == "__main__":
    sys.exit(main())
