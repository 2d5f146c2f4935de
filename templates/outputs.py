"""The files a run leaves in its work folder (``WORK_DIR``), named once.

The code that writes them (``templates.train``, ``templates.evaluate``, ``templates.pipeline``,
``templates.export``), the rehearsal that checks a run left them (``smoke.rehearse``) and the
comparison that finds the summary among fetched outputs (``builders/compare.py``) all read these
names. ``output_files(model)`` lists them all, in the order the notebook's introduction names them.
"""

LAST_CHECKPOINT = "last.pth"  # every epoch: the full training state, what a resumed run reads
CHECKPOINT_PATTERN = "ckpt_ep*.pth"  # every ``checkpoint_every`` epochs (``checkpoint_name``)
HISTORY_FILE = "history.csv"
CURVES_FILE = "training_curves.png"
SPECTROGRAMS_FILE = "spectrogram_comparison.png"
PER_FILE_SCORES = "eval_per_file.csv"


def best_checkpoint_name(model: str) -> str:
    """``dpt_best.pth``: the best validation epoch's checkpoint (evaluated and exported)."""
    return f"{model}_best.pth"


def checkpoint_name(epoch: int) -> str:
    """``ckpt_ep10.pth``: the periodic checkpoint after ``epoch`` (matches ``CHECKPOINT_PATTERN``)."""
    return f"ckpt_ep{epoch}.pth"


def summary_name(model: str) -> str:
    """``dpt_summary.json`` (``summary_name("*")``: the pattern that finds any model's)."""
    return f"{model}_summary.json"


def int8_name(model: str) -> str:
    """``dpt_int8.pth``: the dynamically quantised export (absent where torch cannot quantise)."""
    return f"{model}_int8.pth"


def onnx_masker_name(model: str) -> str:
    """``dpt_masker.onnx``: the masker exported to ONNX."""
    return f"{model}_masker.onnx"


def run_files(model: str) -> list[str]:
    """What training, evaluation and the summary write (``ckpt_ep*.pth`` as its pattern)."""
    return [best_checkpoint_name(model), CHECKPOINT_PATTERN, LAST_CHECKPOINT, HISTORY_FILE,
            CURVES_FILE, SPECTROGRAMS_FILE, PER_FILE_SCORES, summary_name(model)]


def export_files(model: str) -> list[str]:
    """What the export section writes."""
    return [int8_name(model), onnx_masker_name(model)]


def output_files(model: str) -> list[str]:
    """Every file a run of ``model`` writes: ``run_files`` then ``export_files``."""
    return run_files(model) + export_files(model)
