# Layout of every model's Kaggle notebook (jupytext percent format), rendered by render/notebook.py.
# Cell options are jupytext cell metadata: `section="NAME"` on a markdown cell starts a section;
# markdown may use {title}, {name}, {slug}, {description}, {dataset}, {outputs} and {modules};
# `tags=["parameters"]` is the papermill parameters cell; `module="templates.x"` writes that
# module into the notebook's package (`"@model"`: the spec's model module); `generated="package"`
# makes the package folder and `generated="config"` the `cfg = RunConfig(...)` cell.
# Plain `# %%` cells are the run section's glue, kept short.

# %% [markdown] section="intro"
# # {title}
#
# {description}
#
# Rendered from tested modules by `python -m builders {name}`; do not edit this notebook by hand.
# Dataset: `{dataset}` (mounted under `/kaggle/input`, found by walking it). Every output goes
# to `WORK_DIR`: {outputs}.

# %% [markdown] section="parameters"
# ## Parameters
#
# Run-specific values (the papermill `parameters` cell). A local rehearsal overrides them with a
# small dataset, one epoch and a step cap; there is no second notebook for that.

# %% tags=["parameters"]

# %% [markdown] section="library"
# ## Library
#
# The package this notebook runs, one folded cell per module: each writes its file, verbatim from
# the toolkit's tested sources, into a temporary folder outside `WORK_DIR`, and the run section
# below imports it like any installed package. To try a change in a module, edit its cell and run
# the notebook again from the cell below: the run section then imports the files written anew.
#
# {modules}

# %% generated="package"

# %% module="templates.setup"

# %% module="compat.sample_rate"

# %% module="compat.audio"

# %% module="compat.torch_compat"

# %% module="templates.datasets"

# %% module="templates.config"

# %% module="templates.outputs"

# %% module="templates.data"

# %% module="templates.datacheck"

# %% module="templates.stft"

# %% module="templates.models.base"

# %% module="templates.models.registry"

# %% module="templates.models.catalog"

# %% module="@model"

# %% module="templates.losses"

# %% module="templates.metrics"

# %% module="templates.checkpoint"

# %% module="templates.train"

# %% module="templates.distributed"

# %% module="templates.evaluate"

# %% module="templates.plots"

# %% module="templates.summary"

# %% module="templates.export"

# %% module="templates.pipeline"

# %% [markdown] section="install"
# ## Install what the image lacks
#
# PESQ, STOI, the `.7z` reader and ONNX (for the export) may be missing from the Kaggle image;
# missing ones are pip-installed at the versions this toolkit was tested with.

# %%
from templates.setup import NOTEBOOK_REQUIREMENTS, ensure_packages

installed = ensure_packages(NOTEBOOK_REQUIREMENTS)
print("installed:", ", ".join(installed) if installed else "nothing, all present")

# %% [markdown] section="environment"
# ## Environment check
#
# Versions, the GPU and whether this PyTorch has kernels for it. Fails here, in seconds, rather
# than at the first CUDA call after the data is prepared, should Kaggle ever hand this image a GPU
# older than its torch supports (Kaggle retired the P100, sm_60: a P100 request runs on T4 x2),
# and when a full run got no GPU at all (unless `ALLOW_CPU = True`). Library versions move under
# a notebook: `compat/` avoids `torchaudio.info`, reads GPU memory with the `total_memory`
# fallback, calls `torch.load` with an explicit `weights_only` and builds `ReduceLROnPlateau`
# without `verbose`.

# %%
from compat.torch_compat import (
    check_gpu_supported, environment_report, format_environment, require_gpu, run_without_cuda_init,
)

# In a forked child: this kernel must not initialise CUDA before training forks its GPU workers.
print(format_environment(run_without_cuda_init(environment_report, WORK_DIR)))
print(run_without_cuda_init(check_gpu_supported))
print(require_gpu(smoke=SMOKE, allow_cpu=ALLOW_CPU))  # a full run without a GPU stops here

# %% [markdown] section="config"
# ## Configuration

# %% generated="config"

# %% [markdown] section="data"
# ## Data: discovery, extraction, pairing and checks
#
# The dataset is found by walking `DATA_DIR` (mount paths change); `.7z` archives are extracted
# into `SCRATCH_DIR` (the system temp folder when None), never into `WORK_DIR`, which Kaggle saves
# as the output. Noisy and clean files are paired by name and checked: sample rate, channels,
# durations from the headers, silent clean references, and the noisy/clean correlation of
# aligned crops.
# Training crops take ONE offset for the noisy and the clean file.

# %%
from templates.pipeline import finish_summary, prepare_data, run_evaluation, run_training, write_outputs

data = prepare_data(cfg)  # prints the data report; refuses unusable data

# %% [markdown] section="model"
# ## Model
#
# STFT front end, masker, mask, inverse STFT; models differ only in the masker.

# %%
from templates.models.registry import build_model, format_parameter_split

print(format_parameter_split(build_model(cfg.model, **cfg.model_kwargs)))

# %% [markdown] section="training"
# ## Training
#
# Warmup where the model needs it, plateau scheduling, early stopping, AMP on CUDA, every visible
# GPU; checkpoints are written atomically and an interrupted run resumes from `last.pth`.

# %%
model, train_result = run_training(cfg, data)

# %% [markdown] section="evaluation"
# ## Evaluation
#
# PESQ (wide band), STOI and SI-SDR of the noisy input and of the enhanced output on the test set.

# %%
eval_result = run_evaluation(cfg, model, data)

# %% [markdown] section="outputs"
# ## Plots and summary

# %%
import json

summary = write_outputs(cfg, model, train_result, eval_result)
print(json.dumps(summary["metrics"], indent=2))

# %% [markdown] section="export"
# ## Export: INT8, ONNX and CPU latency
#
# The trained model as a dynamically quantised INT8 checkpoint and an ONNX masker (the STFT stays
# outside), with a one-thread CPU latency table (fp32 vs INT8 vs ONNX Runtime) added to the summary.

# %%
from templates.export import export_artifacts

summary = finish_summary(cfg, summary, export_artifacts(model, cfg.work_dir, sample_rate=cfg.sample_rate))
