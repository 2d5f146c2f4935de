"""Header scan vs decoding, and crop reads vs whole-file reads, on files as long as the real ones.

    python benchmarks/bench_audio_io.py [--files 200] [--seconds 16 24] [--crop 3] [--repeat 3]

Writes ``--files`` 16 kHz PCM_16 mono wavs of 16-24 s (the dataset's clips are 16.6-24.5 s) to a
temp folder, then measures side by side in one run:

- duration scan: ``audio_info`` (header only) vs decoding each file and taking its length (the
  seed's fix for the removed ``torchaudio.info``: ``torchaudio.load`` + ``shape``; soundfile's
  whole-file read stands in when torchaudio is not installed, and both are timed when it is);
- a 3 s training crop: ``load_audio(offset, frames)`` vs reading the whole file then slicing.

Files sit in the page cache after being written, so this measures decoding work, not disk seeks;
on a cold disk the partial read saves more. Best of ``--repeat`` passes is reported.
"""

import argparse
import importlib
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from compat.audio import audio_info, load_audio
from compat.sample_rate import SAMPLE_RATE


def write_files(folder: Path, n: int, lo: float, hi: float, sr: int = SAMPLE_RATE, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        m = int(rng.uniform(lo, hi) * sr)
        p = folder / f"{i:04d}.wav"
        sf.write(str(p), (rng.standard_normal(m) * 0.1).astype(np.float32), sr, subtype="PCM_16")
        paths.append(p)
    return paths


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def run(n_files: int, lo: float, hi: float, crop_s: float, repeat: int, sr: int = SAMPLE_RATE) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="bench_audio_io_"))
    try:
        t = time.perf_counter()
        paths = write_files(folder, n_files, lo, hi, sr)
        write_s = time.perf_counter() - t
        total_s = sum(sf.info(str(p)).frames for p in paths) / sr
        crop = int(crop_s * sr)
        rng = np.random.default_rng(1)
        offsets = [int(rng.integers(0, sf.info(str(p)).frames - crop)) for p in paths]

        def header_scan():
            return sum(audio_info(p).frames for p in paths)

        def decode_scan_soundfile():
            return sum(sf.read(str(p), dtype="float32")[0].shape[-1] for p in paths)

        def crop_partial():
            for p, o in zip(paths, offsets, strict=True):
                x = load_audio(p, sr, offset=o, frames=crop)
                assert x.shape[0] == crop

        def crop_whole():
            for p, o in zip(paths, offsets, strict=True):
                x = load_audio(p, sr)[o : o + crop]
                assert x.shape[0] == crop

        assert header_scan() == decode_scan_soundfile()  # same answer, and warms the page cache
        res = {
            "files": n_files,
            "audio_hours": total_s / 3600,
            "write_s": write_s,
            "header_scan_s": best_of(header_scan, repeat),
            "decode_scan_soundfile_s": best_of(decode_scan_soundfile, repeat),
            "crop_partial_s": best_of(crop_partial, repeat),
            "crop_whole_s": best_of(crop_whole, repeat),
        }
        try:
            ta = importlib.import_module("torchaudio")
        except Exception:
            ta = None
        if ta is not None:
            res["decode_scan_torchaudio_s"] = best_of(
                lambda: sum(ta.load(str(p))[0].shape[-1] for p in paths), repeat
            )
        return res
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def report(res: dict) -> str:
    lines = [
        f"{res['files']} files, {res['audio_hours']:.2f} h of 16 kHz audio (written in {res['write_s']:.1f} s)",
        f"duration scan, header only (audio_info):        {res['header_scan_s']:.4f} s",
        f"duration scan, decode whole (soundfile.read):   {res['decode_scan_soundfile_s']:.4f} s"
        f"   -> header scan {res['decode_scan_soundfile_s'] / res['header_scan_s']:.1f}x faster",
    ]
    if "decode_scan_torchaudio_s" in res:
        lines.append(
            f"duration scan, decode whole (torchaudio.load):  {res['decode_scan_torchaudio_s']:.4f} s"
            f"   -> header scan {res['decode_scan_torchaudio_s'] / res['header_scan_s']:.1f}x faster"
        )
    else:
        lines.append("duration scan, torchaudio.load: not timed (torchaudio not installed)")
    lines += [
        f"3 s crop, partial read (load_audio offset):     {res['crop_partial_s']:.4f} s",
        f"3 s crop, load whole then slice:                {res['crop_whole_s']:.4f} s"
        f"   -> partial read {res['crop_whole_s'] / res['crop_partial_s']:.1f}x faster",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="audio I/O benchmark (header vs decode, crop vs whole)")
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--seconds", type=float, nargs=2, default=(16.0, 24.0), metavar=("LOW", "HIGH"))
    ap.add_argument("--crop", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    print(report(run(args.files, args.seconds[0], args.seconds[1], args.crop, args.repeat)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
