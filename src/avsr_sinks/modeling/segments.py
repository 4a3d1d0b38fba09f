"""What each position of the LLM input holds, in a module of its own so that readers of the saved
analysis (figures, tables) name the segments without importing torch, transformers and peft."""

from __future__ import annotations

from enum import IntEnum


class Segment(IntEnum):
    """What each position of the LLM input holds; the analysis groups tokens by it."""

    PAD = 0
    BOS = 1
    DELIMITER = 2
    AUDIO = 3
    VIDEO = 4
    PROMPT = 5
    RESPONSE = 6
