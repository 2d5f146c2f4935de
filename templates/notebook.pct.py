# Layout of every model's Kaggle notebook (jupytext percent format), rendered by render/notebook.py.
# `# %% [markdown]` cells may use {title}, {name}, {slug}, {description}, {dataset};
# `# %% include=MODULE` pastes a module (`@model` is the spec's own model module);
# `# %% parameters` becomes the papermill parameters cell; plain `# %%` cells are glue, kept short.

# %% [markdown] section=intro
# # {title}
#
# {description}
#
# Rendered from tested modules by `python builders/{name}.py`; do not edit this notebook by hand.
# Dataset: `{dataset}` (mounted under `/kaggle/input`, found by walking it). Every output goes
# to `WORK_DIR`: `{name}_best.pth`, `ckpt_ep*.pth`, `last.pth`, `history.csv`,
# `training_curves.png`, `spectrogram_comparison.png`, `eval_per_file.csv`, `{name}_summary.json`,
# and the exports `{name}_int8.pth`, `{name}_masker.onnx`.

# %% [markdown] section=parameters
# ## Parameters
#
# Run-specific values (the papermill `parameters` cell). A local rehearsal overrides them with a
# small dataset, one epoch and a step cap; there is no second notebook for that.

# %% parameters

# %% [markdown] section=install
# ## Install what the image lacks
#
# PESQ, STOI, the `.7z` reader and ONNX (for the export) may be missing from the Kaggle image;
# missing ones are pip-installed at the versions this toolkit was tested with.

# %% include=templates.setup

# %%
installed = ensure_packages(NOTEBOOK_REQUIREMENTS)
print("installed:", ", ".join(installed) if installed else "nothing, all present")

# %% [markdown] section=compat
# ## Compatibility layer
#
# Library versions move under a notebook: these helpers avoid `torchaudio.info`, read GPU memory
# with the `total_memory` fallback, call `torch.load` with an explicit `weights_only`, and build
# `ReduceLROnPlateau` without `verbose`.

# %% include=compat.audio

# %% include=compat.torch_compat

# %% [markdown] section=environment
# ## Environment check
#
# Versions, the GPU and whether this PyTorch has kernels for it. Fails here, in seconds, rather
# than at the first CUDA call after the data is prepared, should Kaggle ever hand this image a GPU
# older than its torch supports (Kaggle retired the P100, sm_60: a P100 request runs on T4 x2),
# and when a full run got no GPU at all (unless `ALLOW_CPU = True`).

# %%
# In a forked child: this kernel must not initialise CUDA before training forks its GPU workers.
print(format_environment(run_without_cuda_init(environment_report, WORK_DIR)))
print(run_without_cuda_init(check_gpu_supported))
print(require_gpu(smoke=SMOKE, allow_cpu=ALLOW_CPU))  # a full run without a GPU stops here

# %% [markdown] section=config
# ## Configuration

# %% include=templates.datasets

# %% include=templates.config

# %%
cfg = RunConfig(
    model=MODEL_NAME, data_dir=DATA_DIR, work_dir=WORK_DIR, epochs=EPOCHS,
    batch_size=BATCH_SIZE, lr=LR, crop_seconds=CROP_SECONDS, seed=SEED, max_steps=MAX_STEPS,
    smoke=SMOKE, num_workers=NUM_WORKERS, eval_mode=EVAL_MODE, max_test_files=MAX_TEST_FILES,
    warmup_epochs=WARMUP_EPOCHS, patience=PATIENCE, loss=LOSS, scratch_dir=SCRATCH_DIR,
    time_budget_hours=TIME_BUDGET_HOURS, allow_cpu=ALLOW_CPU, gpus=GPUS, dataset=DATASET,
    resume_from=RESUME_FROM,
)
print(cfg)

# %% [markdown] section=data
# ## Data: discovery, extraction, pairing and checks
#
# The dataset is found by walking `DATA_DIR` (mount paths change); `.7z` archives are extracted
# into `SCRATCH_DIR` (the system temp folder when None), never into `WORK_DIR`, which Kaggle saves
# as the output. Noisy and clean files are paired by name and checked: sample rate, channels,
# durations from the headers, silent clean references, and the noisy/clean correlation of
# aligned crops.
# Training crops take ONE offset for the noisy and the clean file.

# %% include=templates.data

# %% include=templates.datacheck

# %% [markdown]
# The stages the following one-line cells call (they use functions defined further down).

# %% include=templates.pipeline

# %%
data = prepare_data(cfg)  # prints the data report; refuses unusable data

# %% [markdown] section=model
# ## Model
#
# STFT front end, masker, mask, inverse STFT; models differ only in the masker.

# %% include=templates.stft

# %% include=templates.models.base

# %% include=templates.models.registry

# %% include=@model

# %%
print(format_parameter_split(build_model(cfg.model, **cfg.model_kwargs)))

# %% [markdown] section=loss
# ## Loss and metrics

# %% include=templates.losses

# %% include=templates.metrics

# %% [markdown] section=training
# ## Training
#
# Warmup where the model needs it, plateau scheduling, early stopping, AMP on CUDA, every visible
# GPU; checkpoints are written atomically and an interrupted run resumes from `last.pth`.

# %% include=templates.checkpoint

# %% include=templates.train

# %% include=templates.distributed

# %%
model, train_result = run_training(cfg, data)

# %% [markdown] section=evaluation
# ## Evaluation
#
# PESQ (wide band), STOI and SI-SDR of the noisy input and of the enhanced output on the test set.

# %% include=templates.evaluate

# %%
eval_result = run_evaluation(cfg, model, data)

# %% [markdown] section=outputs
# ## Plots and summary

# %% include=templates.plots

# %% include=templates.summary

# %%
import json

summary = write_outputs(cfg, model, train_result, eval_result)
print(json.dumps(summary["metrics"], indent=2))

# %% [markdown] section=export
# ## Export: INT8, ONNX and CPU latency
#
# The trained model as a dynamically quantised INT8 checkpoint and an ONNX masker (the STFT stays
# outside), with a one-thread CPU latency table (fp32 vs INT8 vs ONNX Runtime) added to the summary.

# %% include=templates.export

# %%
summary = finish_summary(cfg, summary, export_artifacts(model, cfg.work_dir, sample_rate=cfg.sample_rate))
