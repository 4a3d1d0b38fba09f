"""Attention sinks, massive activations and BOS cosines: capturing a teacher-forced pass and the metrics
read from it.
"""
