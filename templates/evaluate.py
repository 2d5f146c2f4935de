"""Test-set evaluation: enhance whole files in overlapping chunks, score noisy and enhanced.

``enhance_waveform`` runs the model on chunks of ``chunk_seconds`` that overlap by
``overlap_seconds`` and cross-fades them with raised-cosine weights, so a 24 s file costs the
memory of a 6 s one and the output has exactly the input length. ``evaluate_model`` scores
PESQ-wb, STOI and SI-SDR for noisy and enhanced (``templates.metrics.score_pairs``, all cores),
either on whole files (``eval_mode="full"``) or on their first 3 s (``"first3"``, offset 0: the
protocol of the Libri figures quoted in README.md).
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from compat.audio import load_audio
from compat.sample_rate import SAMPLE_RATE
from templates.metrics import score_pairs
from templates.outputs import PER_FILE_SCORES

FIRST3_SECONDS = 3.0
N_EXAMPLES = 3
# The STFT front end needs T > n_fft // 2; shorter inputs are zero-padded to this and cut back.
_EVAL_MIN_SAMPLES = 1024


@dataclass
class EvalResult:
    """``table``: a ``ScoreTable``; ``examples``: dicts (noisy, enhanced, clean: np arrays, name)."""

    table: object
    examples: list = field(default_factory=list)
    mode: str = "full"


def _fade_weights(length: int, fade: int, fade_in: bool, fade_out: bool) -> torch.Tensor:
    """(length,) weights: 1 in the middle, raised-cosine ramps of ``fade`` samples at the ends.

    Ramps start above 0 (half-sample offset) so every output sample has positive total weight.
    """
    w = torch.ones(length, dtype=torch.float32)
    fade = min(fade, length)
    if fade > 0:
        ramp = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(fade, dtype=torch.float32) + 0.5) / fade)
        if fade_in:
            w[:fade] = ramp
        if fade_out:
            w[length - fade:] = torch.minimum(w[length - fade:], ramp.flip(0))
    return w


def chunk_starts(total: int, chunk: int, overlap: int, align: int = 1) -> list[int]:
    """Start samples of chunks of ``chunk`` covering ``total`` with >= ``overlap`` overlap.

    Starts are multiples of ``align`` (the model's STFT hop), so every chunk's frames sit on the
    whole file's frame grid: a mask computed per frame is then the same in a chunk as in one
    pass, except near chunk edges, where the cross-fade takes over. The last chunk ends at
    ``total`` (it may be up to ``align - 1`` samples longer than ``chunk``; never a short tail).
    """
    if total <= chunk:
        return [0]
    align = max(1, int(align))
    hop = max(align, (chunk - overlap) // align * align)
    last = (total - chunk) // align * align
    return [*range(0, last, hop), last]


def _frame_hop(model: nn.Module) -> int:
    """The STFT hop of a MaskingModel (1 for models without a front end)."""
    return int(getattr(getattr(model, "front_end", None), "hop", 1) or 1)


@torch.no_grad()
def enhance_waveform(
    model: nn.Module,
    wav,
    device,
    chunk_seconds: float = 6.0,
    overlap_seconds: float = 1.0,
    sample_rate: int = SAMPLE_RATE,
) -> torch.Tensor:
    """Enhance one whole file: ``wav`` (T,) -> (T,) float32 on the CPU, same length.

    Chunks of ``chunk_seconds`` (batch of one, float32) overlap by ``overlap_seconds``; the
    overlaps are cross-faded and the weighted sum normalised by the summed weights.
    """
    wav = torch.as_tensor(wav, dtype=torch.float32)
    if wav.dim() != 1:
        raise ValueError(f"enhance_waveform expects a 1-D waveform (T,), got shape {tuple(wav.shape)}")
    if overlap_seconds < 0 or chunk_seconds <= 0 or overlap_seconds >= chunk_seconds:
        raise ValueError(
            f"need 0 <= overlap_seconds < chunk_seconds, got chunk {chunk_seconds}, "
            f"overlap {overlap_seconds}"
        )
    device = torch.device(device)
    total = wav.shape[0]
    chunk = max(int(round(chunk_seconds * sample_rate)), _EVAL_MIN_SAMPLES)
    overlap = int(round(overlap_seconds * sample_rate))
    was_training = model.training
    model.eval()
    out = torch.zeros(total, dtype=torch.float32)
    weight = torch.zeros(total, dtype=torch.float32)
    try:
        starts = chunk_starts(total, chunk, overlap, align=_frame_hop(model))
        for i, start in enumerate(starts):
            end = total if i == len(starts) - 1 else start + chunk
            piece = wav[start:end]
            n = piece.shape[0]
            if n < _EVAL_MIN_SAMPLES:
                piece = torch.nn.functional.pad(piece, (0, _EVAL_MIN_SAMPLES - n))
            est = model(piece.unsqueeze(0).to(device)).float()[0, :n].cpu()  # (n,)
            # Fade only where a neighbouring chunk overlaps; the actual overlap can exceed
            # `overlap` for the end-aligned last chunk, the normalisation absorbs that.
            w = _fade_weights(n, overlap, fade_in=i > 0, fade_out=i < len(starts) - 1)
            out[start:end] += w * est
            weight[start:end] += w
    finally:
        model.train(was_training)
    return out / weight


def _load_pair(noisy_path, clean_path, sample_rate, frames):
    """(noisy (T,), clean (T,)) numpy float32 cut to the shorter length."""
    noisy = load_audio(noisy_path, sample_rate=sample_rate, frames=frames)
    clean = load_audio(clean_path, sample_rate=sample_rate, frames=frames)
    n = min(noisy.shape[0], clean.shape[0])
    if n == 0:
        raise ValueError("empty audio")
    return noisy[:n], clean[:n]


def evaluate_model(model: nn.Module, test_pairs, cfg, device) -> EvalResult:
    """Score noisy and enhanced audio of ``test_pairs`` [(noisy_path, clean_path), ...].

    ``cfg.eval_mode``: ``"full"`` enhances whole files (chunked), ``"first3"`` the first 3 s
    (offset 0, one pass). ``cfg.max_test_files`` caps the number of pairs.
    Files that cannot be read are skipped and listed in ``table.skipped`` with the reason;
    ``eval_per_file.csv`` is written to ``cfg.work_dir``.
    """
    if cfg.eval_mode not in ("full", "first3"):
        raise ValueError(f"eval_mode must be 'full' or 'first3', got {cfg.eval_mode!r}")
    pairs = list(test_pairs)[: cfg.max_test_files] if cfg.max_test_files else list(test_pairs)
    frames = int(round(FIRST3_SECONDS * cfg.sample_rate)) if cfg.eval_mode == "first3" else None
    items, examples, unreadable = [], [], []
    for noisy_path, clean_path in pairs:
        name = Path(noisy_path).name
        try:
            noisy, clean = _load_pair(noisy_path, clean_path, cfg.sample_rate, frames)
        except (OSError, ValueError, RuntimeError) as exc:
            unreadable.append((name, f"unreadable: {exc}"))
            continue
        enhanced = enhance_waveform(model, noisy, device, sample_rate=cfg.sample_rate)
        item = (name, clean.numpy(), noisy.numpy(), enhanced.numpy())
        items.append(item)
        if len(examples) < N_EXAMPLES:
            examples.append(
                {"name": name, "noisy": item[2], "enhanced": item[3], "clean": item[1]}
            )
    if not items:
        reasons = "; ".join(f"{n}: {r}" for n, r in unreadable[:3]) or "no test pairs given"
        raise ValueError(f"evaluate_model: no test file could be scored ({reasons})")
    table = score_pairs(items, sample_rate=cfg.sample_rate)
    table.skipped.extend(unreadable)
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    table.to_csv(work / PER_FILE_SCORES)
    return EvalResult(table=table, examples=examples, mode=cfg.eval_mode)

