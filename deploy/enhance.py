"""Enhance wav files with a trained checkpoint.

    enhance CKPT INPUT [INPUT ...] --out DIR [--model NAME] [--model-kwargs JSON]
            [--chunk-seconds 6] [--overlap-seconds 1] [--vad-gate-db 0] [--vad webrtc|energy]
            [--trust-checkpoint]
    python -m deploy.enhance ...   (same)

CKPT is one of our checkpoint dicts (its `config` names the model and its kwargs) or a bare
state_dict (then `--model NAME` is required, and `--model-kwargs '{"hidden": 128}'` when the
architecture differs from the defaults). INPUTs are wav files or folders (searched recursively
for *.wav / *.flac); outputs keep the relative path under `--out`.

Audio handling: any sample rate and channel count. Each file is resampled to 16 kHz for the
model and the result back to the file's own rate. Channels are enhanced one by one (not
downmixed), so a stereo file stays stereo with its channel balance; the cost is one model pass
per channel. Long files go through `enhance_waveform` in overlapping, cross-faded chunks.
`--vad-gate-db D` attenuates non-speech frames of the enhanced signal by D dB (smoothed), with
the detector chosen by `--vad` (see deploy/vad.py for why WebRTC is the default).

CKPT is read weights-only: nothing in the file can run code. A file holding other Python objects
is refused with the object's name; `--trust-checkpoint` unpickles it fully, which runs any code a
crafted file holds, so it is for files you made or trust only.

CKPT may also be an INT8 file (`<model>_int8.pth` from the notebook's export section or
`deploy.quantize.save_int8`); it names its own model.

A file that cannot be read or written is reported (`x.wav: cannot read: ...`) and skipped, and so
is an input whose output path is taken (two inputs named `x.wav`, or `--out` pointing at the
input folder: inputs are never overwritten); the command exits 1 when any file failed, after a
summary line, and 2 when the checkpoint or options are unusable: those (a chunk length, a gate,
an input path that does not exist, an --out that is a file) are refused once, before any file
is read or written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from templates.checkpoint import CheckpointError, read_checkpoint, strip_wrapper_prefix
from templates.evaluate import enhance_waveform
from templates.models.registry import build_model, model_names

MODEL_RATE = 16000
AUDIO_SUFFIXES = (".wav", ".flac")


class EnhanceError(ValueError):
    """A problem with the command's inputs (checkpoint, model name); message says the fix."""


def legacy_model_kwargs(model_kwargs: dict | None) -> dict:
    """Constructor kwargs for a checkpoint without `model_config` (written before the trainer
    recorded it, or a bare state_dict): such a model estimated a real mask, whatever the
    constructors' default `output` is today."""
    return {"output": "mask", **dict(model_kwargs or {})}


def load_model(checkpoint, model_name: str | None = None, model_kwargs: dict | None = None,
               *, trusted: bool = False) -> nn.Module:
    """An eval-mode CPU model from our checkpoint dict or a bare state_dict.

    The checkpoint's `config` (a RunConfig dict: `model`, `model_kwargs`) names the architecture,
    and its `model_config` (the model's `get_config()`, saved by the trainer) gives every
    constructor argument; older checkpoints without it are real-mask models
    (`legacy_model_kwargs`). `model_name`/`model_kwargs` override them and are required for a
    bare state_dict. Any row of the model table (templates/models/catalog.py) can be named:
    `build_model` imports its module. The file is read weights-only (nothing in it can run)
    unless `trusted`.
    """
    path = Path(checkpoint)
    try:
        ckpt = read_checkpoint(path, trusted=trusted)
    except CheckpointError as e:
        qmodel = _load_int8_or_none(path, trusted)  # `<model>_int8.pth` from the notebook's export
        if qmodel is None:
            raise
        if model_name or model_kwargs is not None:
            raise EnhanceError(f"{path.name}: an INT8 file names its own model; drop --model and "
                               f"--model-kwargs") from e
        return qmodel
    cfg = ckpt.get("config") or {}
    name = model_name or cfg.get("model")
    if not name:
        raise EnhanceError(
            f"{path.name}: a bare state_dict does not say which model it holds; pass --model "
            f"NAME (one of {', '.join(model_names())})"
        )
    if model_kwargs is not None:
        kwargs = dict(model_kwargs)
    elif ckpt.get("model_config") and name == cfg.get("model"):
        kwargs = dict(ckpt["model_config"])  # the full architecture, recorded by the trainer
    else:
        kwargs = legacy_model_kwargs(cfg.get("model_kwargs"))
    try:
        model = build_model(name, **kwargs)
    except (TypeError, ValueError) as e:
        raise EnhanceError(f"{path.name}: cannot build model {name!r} with {kwargs}: {e}") from e
    try:
        model.load_state_dict(strip_wrapper_prefix(ckpt["model"]))
    except RuntimeError as e:
        raise EnhanceError(
            f"{path.name}: weights do not fit {name!r} with kwargs {kwargs} (pass --model-kwargs "
            f"to match the trained architecture): {str(e).splitlines()[0]}"
        ) from e
    return model.eval()


def _load_int8_or_none(path: Path, trusted: bool = False) -> nn.Module | None:
    """The INT8 model in `path` (written by templates.export / deploy.quantize), else None."""
    import warnings

    from deploy.quantize import is_int8_file, load_int8

    with warnings.catch_warnings():  # torch 2.13 deprecates the quantized tensor API it uses
        warnings.simplefilter("ignore")
        if not is_int8_file(path, trusted=trusted):
            return None
        return load_int8(path, trusted=trusted)


def _resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    """(T,) at src -> (T * dst / src,) at dst, polyphase."""
    if src == dst:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(src, dst)
    return resample_poly(x, dst // g, src // g).astype(np.float32)


def enhance_array(model: nn.Module, audio: np.ndarray, sample_rate: int, chunk_seconds: float = 6.0,
                  overlap_seconds: float = 1.0, vad_gate_db: float = 0.0,
                  vad_detector: str = "webrtc", enhancer=None) -> np.ndarray:
    """Enhance (T, C) float audio at any rate, channel by channel -> (T, C) float32 same rate.

    `enhancer`, if given, replaces the model call: a function (T,) tensor at 16 kHz -> (T,).
    """
    if audio.ndim != 2:
        raise ValueError(f"expected (frames, channels) audio, got shape {audio.shape}")
    out = np.zeros_like(audio, dtype=np.float32)
    for c in range(audio.shape[1]):
        x16 = _resample(audio[:, c].astype(np.float32), sample_rate, MODEL_RATE)
        if len(x16) <= 256:  # the STFT needs more than half a window; too short to enhance
            raise ValueError(f"too short to enhance: {audio.shape[0]} samples at {sample_rate} Hz")
        wav = torch.from_numpy(np.ascontiguousarray(x16))
        with torch.no_grad():
            if enhancer is not None:
                y16 = enhancer(wav)
            else:
                y16 = enhance_waveform(model, wav, torch.device("cpu"), chunk_seconds,
                                       overlap_seconds, MODEL_RATE)
        y16 = y16.detach().cpu().numpy().astype(np.float32)
        if vad_gate_db > 0:
            from deploy.vad import detect_speech, gate_non_speech

            active = detect_speech(y16, MODEL_RATE, vad_detector)
            y16 = gate_non_speech(y16, active, MODEL_RATE, atten_db=vad_gate_db)
        y = _resample(y16, MODEL_RATE, sample_rate)
        n = min(len(y), audio.shape[0])
        out[:n, c] = y[:n]
    return out


def collect_inputs(inputs) -> list[tuple[Path, Path]]:
    """(file, relative output path) for every input file and every audio file under folders."""
    found: list[tuple[Path, Path]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(q for q in p.rglob("*") if q.suffix.lower() in AUDIO_SUFFIXES):
                found.append((f, f.relative_to(p).with_suffix(".wav")))
        else:  # missing files are reported when read, like unreadable ones
            found.append((p, Path(p.name).with_suffix(".wav")))
    return found


@dataclass
class EnhanceReport:
    """What `enhance_files` did: written outputs, failures with reasons, audio seconds."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0

    def summary(self) -> str:
        rtf = self.compute_seconds / self.audio_seconds if self.audio_seconds else float("nan")
        return (f"enhanced {len(self.written)} file(s), {len(self.failed)} failed; "
                f"{self.audio_seconds:.1f} s of audio in {self.compute_seconds:.1f} s "
                f"(real-time factor {rtf:.3f})")


def enhance_files(model: nn.Module, inputs, out_dir, chunk_seconds: float = 6.0,
                  overlap_seconds: float = 1.0, vad_gate_db: float = 0.0,
                  vad_detector: str = "webrtc", progress: bool = True,
                  echo=print) -> EnhanceReport:
    """Enhance every input into `out_dir` at the input's rate and channel count."""
    import soundfile as sf
    from tqdm.auto import tqdm

    if vad_gate_db > 0:
        from deploy.vad import make_detector

        make_detector(vad_detector)  # a missing webrtcvad fails once here, not once per file
    out_dir = Path(out_dir)
    report = EnhanceReport()
    items = collect_inputs(inputs)
    claimed: dict[Path, Path] = {}  # resolved output -> the input it was assigned to
    sources = {src.resolve() for src, _ in items}
    for src, rel in tqdm(items, desc="enhance", unit="file", disable=not progress):
        dst = out_dir / rel
        key = dst.resolve()
        if key in sources:
            reason = f"output {dst} would overwrite an input file; choose another --out"
        elif key in claimed:
            reason = (f"output {dst} is already written for {claimed[key]}; enhance the two "
                      f"inputs into different --out folders")
        else:
            claimed[key] = src
            reason = None
        if reason:
            report.failed.append((str(src), reason))
            echo(f"{src}: skipped: {reason}", file=sys.stderr)
            continue
        try:
            audio, rate = sf.read(str(src), dtype="float32", always_2d=True)  # T, C
        except Exception as e:  # missing, truncated, not audio: name the file, go on
            report.failed.append((str(src), f"cannot read: {type(e).__name__}: {e}"))
            echo(f"{src}: cannot read: {e}", file=sys.stderr)
            continue
        try:
            t0 = time.perf_counter()
            enhanced = enhance_array(model, audio, rate, chunk_seconds, overlap_seconds,
                                     vad_gate_db, vad_detector)
            report.compute_seconds += time.perf_counter() - t0
            dst.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(dst), np.clip(enhanced, -1.0, 1.0), rate, subtype="PCM_16")
        except Exception as e:
            report.failed.append((str(src), f"{type(e).__name__}: {e}"))
            echo(f"{src}: cannot enhance: {e}", file=sys.stderr)
            continue
        report.written.append(dst)
        report.audio_seconds += audio.shape[0] / rate
    if not items:
        report.failed.append(("(inputs)", "no audio files found"))
        echo("no audio files found in the inputs", file=sys.stderr)
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="enhance", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="our checkpoint .pth or a bare state_dict")
    p.add_argument("inputs", nargs="+", help="wav/flac files or folders")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", default=None, help="model name (required for bare state_dicts)")
    p.add_argument("--model-kwargs", default=None, help='JSON, e.g. \'{"d_model": 64}\'')
    p.add_argument("--chunk-seconds", type=float, default=6.0)
    p.add_argument("--overlap-seconds", type=float, default=1.0)
    p.add_argument("--vad-gate-db", type=float, default=0.0,
                   help="attenuate non-speech frames by this many dB (0: off)")
    p.add_argument("--vad", default="webrtc", choices=("webrtc", "energy"),
                   help="detector for --vad-gate-db (webrtc: aggressiveness 3)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="unpickle CKPT fully. RISK: a crafted .pth then runs any code it holds "
                        "on this machine; use it only for a file you made or trust, when the "
                        "default weights-only load refuses it")
    return p


def option_problems(args) -> list[str]:
    """One line per unusable option value, found before any file is touched."""
    problems = []
    chunk, overlap = args.chunk_seconds, args.overlap_seconds
    if not math.isfinite(chunk) or chunk <= 0:
        problems.append(f"--chunk-seconds {chunk}: must be a finite number of seconds > 0")
    if not math.isfinite(overlap) or overlap < 0:
        problems.append(f"--overlap-seconds {overlap}: must be a finite number of seconds >= 0")
    elif math.isfinite(chunk) and chunk > 0 and overlap >= chunk:
        problems.append(f"--overlap-seconds {overlap}: must be less than --chunk-seconds {chunk}")
    if not math.isfinite(args.vad_gate_db) or args.vad_gate_db < 0:
        problems.append(f"--vad-gate-db {args.vad_gate_db}: must be a finite number of dB >= 0 "
                        f"(0: off)")
    if args.threads is not None and args.threads < 1:
        problems.append(f"--threads {args.threads}: must be at least 1")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        problems.append(f"--out {out}: is a file; give a folder for the enhanced wavs")
    else:
        parent = next((p for p in [out, *out.parents] if p.exists()), Path("."))
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            problems.append(f"--out {out}: {parent} cannot be written; choose another folder")
    for item in args.inputs:
        if not Path(item).exists():
            problems.append(f"{item}: no such file or folder")
        elif Path(item).is_dir() and not collect_inputs([item]):
            problems.append(f"{item}: no {' or '.join(AUDIO_SUFFIXES)} files in this folder")
    return problems


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    problems = option_problems(args)
    if problems:  # once, up front: not once per input file
        for line in problems:
            print(f"enhance: {line}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        kwargs = json.loads(args.model_kwargs) if args.model_kwargs else None
        if kwargs is not None and not isinstance(kwargs, dict):
            raise EnhanceError(f"--model-kwargs must be a JSON object, got {args.model_kwargs!r}")
        model = load_model(args.checkpoint, args.model, kwargs, trusted=args.trust_checkpoint)
        if args.vad_gate_db > 0:
            from deploy.vad import make_detector

            make_detector(args.vad)  # VADUnavailable (an ImportError and ValueError): exit 2
    except json.JSONDecodeError as e:
        print(f"enhance: --model-kwargs is not valid JSON: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:
        print(f"enhance: {e}", file=sys.stderr)
        return 2
    report = enhance_files(model, args.inputs, args.out, args.chunk_seconds, args.overlap_seconds,
                           args.vad_gate_db, args.vad, progress=not args.no_progress)
    print(report.summary())
    for name, reason in report.failed:
        print(f"  failed: {name}: {reason}", file=sys.stderr)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
