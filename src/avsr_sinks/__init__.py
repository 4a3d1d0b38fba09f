"""avsr_sinks: attention sinks and massive activations in LLM-based audio-visual speech recognition."""

__version__ = "0.1.0"
