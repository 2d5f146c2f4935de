"""score_pairs on a test set shaped like the real one: parallel (fork pool) vs sequential.

    python benchmarks/bench_metrics.py [--pairs 105] [--workers N] [--seed 0]

Generates `--pairs` speech-like clips of 16-24 s at 16 kHz (as the 105 test pairs of
earth16/libri-speech-noise-dataset), a noisy mix and a mildly enhanced version of each, scores
them with `score_pairs(..., workers=1)` and with the parallel pool in the same run, checks that
both tables are identical, and prints the seconds of each and the speed-up.
"""

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compat.sample_rate import SAMPLE_RATE  # noqa: E402
from smoke.dataset import NOISE_TYPES, make_noise, mix_at_snr, speech_like  # noqa: E402
from templates.metrics import score_pairs  # noqa: E402


def make_items(n_pairs: int, seed: int = 0, seconds=(16.0, 24.0)):
    items = []
    for i in range(n_pairs):
        rng = np.random.default_rng([seed, i])
        n = int(rng.uniform(*seconds) * SAMPLE_RATE)
        clean = speech_like(rng, n)
        noise = make_noise(NOISE_TYPES[i % len(NOISE_TYPES)], rng, n)
        noisy, clean = mix_at_snr(clean, noise, rng.uniform(0, 10))
        enhanced = clean + 0.3 * (noisy - clean)  # stands in for a model that removes 70 %
        items.append((f"{i + 1:04d}.wav", clean, noisy, enhanced))
    return items


def _same(a, b) -> bool:
    def plain(t):
        return [[None if isinstance(v, float) and math.isnan(v) else v
                 for v in vars(r).values()] for r in t.rows]

    return plain(a) == plain(b) and a.skipped == b.skipped


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=105)
    parser.add_argument("--workers", type=int, default=None, help="default: every core")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    items = make_items(args.pairs, args.seed)
    audio_s = sum(len(it[1]) for it in items) / SAMPLE_RATE
    print(f"{len(items)} pairs, {audio_s / len(items):.1f} s mean, {audio_s:.0f} s of audio "
          f"(generated in {time.perf_counter() - t0:.1f} s); {os.cpu_count()} CPUs")

    t0 = time.perf_counter()
    seq = score_pairs(items, workers=1)
    t_seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    par = score_pairs(items, workers=args.workers)
    t_par = time.perf_counter() - t0

    workers = args.workers or len(os.sched_getaffinity(0))
    m = par.means()
    print(f"sequential        : {t_seq:7.1f} s")
    print(f"parallel ({workers} procs): {t_par:7.1f} s")
    print(f"speed-up          : {t_seq / t_par:7.2f}x  (tables identical: {_same(seq, par)})")
    print("means  noisy/enhanced: PESQ {:.3f}/{:.3f}  STOI {:.3f}/{:.3f}  SI-SDR {:.2f}/{:.2f} dB"
          .format(m["noisy"]["pesq"], m["enhanced"]["pesq"], m["noisy"]["stoi"],
                  m["enhanced"]["stoi"], m["noisy"]["si_sdr"], m["enhanced"]["si_sdr"]))
    return 0 if _same(seq, par) else 1


if __name__ == "__main__":
    sys.exit(main())
