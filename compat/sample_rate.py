"""The rate (Hz) the models are trained, evaluated and exported at: files at other rates are
resampled to it on load (``compat.audio.load_audio``).

A module of its own, importing nothing, so that the run configuration and the model table read
it without loading torch; ``templates.config`` re-exports it.
"""

SAMPLE_RATE = 16000
