"""Noisy/clean wav pairs in the Kaggle layout (``train/`` noisy, ``y_train/`` clean) for data checks.

Shared by tests/test_datacheck.py and tests/test_datacheck_bad_pairs.py.
"""

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def _speech_like(rng, n):
    """Noise bursts under a syllable-rate envelope: uncorrelated with itself when shifted."""
    t = np.arange(n) / SR
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, 6)) ** 2
    return (rng.standard_normal(n) * env * 0.1).astype(np.float32)


def make_pairs(root: Path, n: int = 10, seconds: float = 2.0, seed: int = 0, shift: float = 0.0) -> Path:
    """``root/train`` (noisy) and ``root/y_train`` (clean); ``shift`` s misaligns the clean files."""
    rng = np.random.default_rng(seed)
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "y_train").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        m = int(seconds * SR)
        s = _speech_like(rng, m + SR)
        clean = s[:m]
        noisy = clean + 0.05 * rng.standard_normal(m).astype(np.float32)
        k = int(shift * SR)
        if k:
            clean = s[k : k + m]
        sf.write(str(root / "train" / f"{i:04d}.wav"), noisy, SR, subtype="PCM_16")
        sf.write(str(root / "y_train" / f"{i:04d}.wav"), clean, SR, subtype="PCM_16")
    return root
