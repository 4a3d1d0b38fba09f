"""Cached encoder outputs: the feature stores and datasets the trainings and decodings read, and train-time
augmentation of them.
"""
