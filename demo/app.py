"""Gradio demo: upload or record noisy speech, hear the enhanced result, compare spectrograms.

    python demo/app.py --checkpoint crn_best.pth [--model NAME] [--host 127.0.0.1] [--port 7860]
                       [--trust-checkpoint]

Runs locally only: no share link, analytics off (GRADIO_ANALYTICS_ENABLED=False is set before
gradio is imported), bound to loopback unless --host says otherwise. The enhancement is the
enhance command's (`deploy.enhance.enhance_array`): any rate, channels enhanced one by one.
The port is `--port`, else `GRADIO_SERVER_PORT` (Gradio's own convention), else 7860. The
checkpoint is read like `enhance` reads it: weights-only unless `--trust-checkpoint`; a missing,
unreadable or refused file, or a bad port, is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.enhance import enhance_array, load_model  # noqa: E402


def spectrogram_figure(noisy: np.ndarray, enhanced: np.ndarray, sample_rate: int):
    """Matplotlib figure: noisy and enhanced log-magnitude spectrograms side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5), sharey=True)
    for ax, x, title in ((axes[0], noisy, "noisy"), (axes[1], enhanced, "enhanced")):
        ax.specgram(x + 1e-9, NFFT=512, Fs=sample_rate, noverlap=256, cmap="magma")
        ax.set_title(title)
        ax.set_xlabel("time (s)")
    axes[0].set_ylabel("frequency (Hz)")
    fig.tight_layout()
    return fig


def enhance_upload(model, path: str | None, vad_gate_db: float = 0.0):
    """(enhanced wav path, figure, timing text) for one uploaded/recorded file path."""
    import soundfile as sf

    if not path:
        raise ValueError("no audio given: upload a file or record one")
    audio, rate = sf.read(path, dtype="float32", always_2d=True)  # T, C
    t0 = time.perf_counter()
    enhanced = enhance_array(model, audio, rate, vad_gate_db=vad_gate_db)
    elapsed = time.perf_counter() - t0
    out = Path(tempfile.mkdtemp(prefix="enhanced_")) / (Path(path).stem + "_enhanced.wav")
    sf.write(str(out), np.clip(enhanced, -1, 1), rate, subtype="PCM_16")
    seconds = audio.shape[0] / rate
    text = (f"processing time: {elapsed * 1000:.0f} ms for {seconds:.2f} s of audio "
            f"(real-time factor {elapsed / seconds:.3f})")
    fig = spectrogram_figure(audio.mean(axis=1), enhanced.mean(axis=1), rate)
    return str(out), fig, text


def build_app(model, title: str = "Speech enhancement"):
    """The Blocks app around `model` (eval mode). Launch it with `.launch(...)`."""
    import gradio as gr

    def _run(path, gate_db):
        try:
            return enhance_upload(model, path, float(gate_db or 0.0))
        except Exception as e:  # show the reason in the UI instead of a bare "Error"
            raise gr.Error(f"{type(e).__name__}: {e}") from e

    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f"## {title}\nUpload or record noisy speech; the model returns it enhanced.")
        with gr.Row():
            noisy = gr.Audio(sources=["upload", "microphone"], type="filepath", label="noisy")
            enhanced = gr.Audio(type="filepath", label="enhanced")
        gate = gr.Slider(0, 40, value=0, step=1, label="attenuate pauses (dB, VAD gate; 0 = off)")
        button = gr.Button("Enhance", variant="primary")
        timing = gr.Textbox(label="processing time")
        plot = gr.Plot(label="spectrograms")
        button.click(_run, inputs=[noisy, gate], outputs=[enhanced, plot, timing],
                     api_name="enhance")
    return app


DEFAULT_PORT = 7860


def resolve_port(port: int | None, env=None) -> int:
    """`--port`, else `GRADIO_SERVER_PORT`, else 7860; ValueError naming the bad source."""
    env = os.environ if env is None else env
    source, value = "--port", port
    if value is None and env.get("GRADIO_SERVER_PORT"):
        source, raw = "GRADIO_SERVER_PORT", env["GRADIO_SERVER_PORT"]
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"GRADIO_SERVER_PORT={raw!r}: not a port number; set it to "
                             f"1-65535 or unset it") from None
    if value is None:
        return DEFAULT_PORT
    if not 1 <= value <= 65535:
        raise ValueError(f"{source} {value}: a port is 1-65535")
    return value


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Gradio speech-enhancement demo (local only)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--model", default=None, help="model name (required for bare state_dicts)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None,
                   help=f"default: GRADIO_SERVER_PORT, else {DEFAULT_PORT}")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="unpickle the checkpoint fully. RISK: a crafted .pth then runs any code "
                        "it holds on this machine; only for a file you made or trust")
    args = p.parse_args(argv)
    try:
        port = resolve_port(args.port)
        model = load_model(args.checkpoint, args.model, trusted=args.trust_checkpoint)
    except (OSError, ValueError) as e:  # CheckpointError and EnhanceError are ValueErrors
        print(f"demo: {e}", file=sys.stderr)
        return 2
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("demo: gradio is not installed: pip install -e '.[deploy]' (or pip install gradio)",
              file=sys.stderr)
        return 2
    build_app(model).launch(server_name=args.host, server_port=port, share=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
