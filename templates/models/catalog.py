"""The model table: one row per model, the only place a model's facts are written.

A row names the model (its registry name, ``@register_model(NAME)`` in its module, and its
notebook's folder and file name), the module that defines it, the Kaggle title (the notebook's
slug is derived from it), the description shown at the top of the notebook, the run defaults
that differ from ``RunConfig``'s (by ``RunConfig`` field name) and the constructor kwargs of a
shrunken copy the smoke harness trains for seconds on a CPU (empty: the full-size model).

Everything that needs the list of models reads it here: ``render.spec`` (the builders, the
notebook's parameters), ``templates.models.registry`` (``build_model`` imports a row's module
on first use), the smoke harness's model discovery and ``enhance --model``. Adding a model is a
module under ``templates/models/`` plus one row below; ``python -m builders NAME`` renders it.
Pure data: no torch import, so the builders read it without loading a model.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelRow:
    """One model. ``defaults``: ``{RunConfig field: value}`` overriding ``RunConfig``'s default
    in this model's notebook (``{"batch_size": 16}`` -> ``BATCH_SIZE = 16``)."""

    name: str
    module: str
    title: str
    description: str
    defaults: dict = field(default_factory=dict)
    smoke_kwargs: dict = field(default_factory=dict)


_DATA_AND_METRICS = ("Trained on aligned noisy/clean crops, evaluated with PESQ-wb, STOI and "
                     "SI-SDR.")

MODELS = (
    ModelRow(
        name="dpt",
        module="templates.models.dpt",
        title="DPT v3 Aligned Speech Enhancement",
        description=(
            "Dual-path transformer mask estimator on the STFT magnitude (attention across "
            "frequency, then across time) trained on aligned noisy/clean crops of "
            "LibriSpeech+noise, evaluated with PESQ-wb, STOI and SI-SDR."
        ),
        # attention layers need a learning-rate warmup (the class's default_warmup_epochs)
        defaults={"batch_size": 8, "warmup_epochs": 3},
        # dropout 0: on a CPU the tiny model's dropout masks cost a third of each smoke step
        smoke_kwargs={"enc_channels": (8,), "d_model": 16, "n_heads": 2, "d_ff": 32,
                      "dec_channels": 8, "dropout": 0.0},
    ),
    ModelRow(
        name="crn",
        module="templates.models.crn",
        title="CRN v3 Aligned Speech Enhancement",
        description=(
            "Convolutional recurrent mask estimator on the STFT magnitude (conv encoder, an LSTM "
            "over time per frequency position, transposed-conv decoder) trained on "
            "aligned noisy/clean crops of LibriSpeech+noise, evaluated with PESQ-wb, STOI and "
            "SI-SDR."
        ),
        defaults={"batch_size": 16},
        smoke_kwargs={"enc_channels": (8, 16, 16), "lstm_hidden": 16,
                      "dec_channels": (16, 8, 8)},
    ),
    ModelRow(
        name="crn_causal",
        module="templates.models.crn_causal",
        title="Causal CRN Streaming Speech Enhancement",
        description=(
            "Causal convolutional recurrent mask estimator (causal conv encoder, a one-way LSTM "
            "over time per frequency position): the model that `deploy.streaming` runs one 16 ms "
            "hop at a time with 32 ms algorithmic latency. " + _DATA_AND_METRICS
        ),
        defaults={"batch_size": 16},
        smoke_kwargs={"channels": (8, 16, 16), "hidden": 16},
    ),
    ModelRow(
        name="compact_crn",
        module="templates.models.compact_crn",
        title="Compact CRN Real Time Speech Enhancement",
        description=(
            "A causal mask estimator of about 48k parameters in the GTCRN family (129 subbands "
            "with ERB merging above 2 kHz, grouped temporal convolutions, dual-path blocks with "
            "grouped one-way GRUs) for real time on one CPU thread; `deploy.streaming` runs it "
            "one 16 ms hop at a time with 32 ms algorithmic latency. " + _DATA_AND_METRICS
        ),
        defaults={"batch_size": 16},
    ),
)


def catalog_names() -> list[str]:
    """The table's model names, in table order."""
    return [row.name for row in MODELS]


def model_row(name: str) -> ModelRow:
    """The row of model ``name``; a ``ValueError`` listing the table's names otherwise."""
    for row in MODELS:
        if row.name == name:
            return row
    raise ValueError(f"no model {name!r} in templates/models/catalog.py; known models: "
                     f"{', '.join(catalog_names())}")
