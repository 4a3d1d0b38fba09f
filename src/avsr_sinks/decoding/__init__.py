"""Decoding and scoring: generation and WER, ACT's calibrated attention and its head search."""
