"""The experiment grid: one function expands params.yaml into experiments, for Snakemake and DVC alike.

An experiment is task x compression rate(s) x method x seed, named like ``asr-a32-baseline-s0``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

TASKS = ("asr", "vsr", "avsr")
# baseline: cross-entropy; decorr: cross-entropy + the decorrelation loss; act: the baseline checkpoint
# decoded with attention calibration (it trains nothing).
METHODS = ("baseline", "decorr", "act")
TRAINED_METHODS = ("baseline", "decorr")

_NAME = re.compile(
    r"^(?P<task>asr|vsr|avsr)-(?:a(?P<a>\d+))?(?:v(?P<v>\d+))?-(?P<method>[a-z]+)-s(?P<seed>\d+)$"
)


@dataclass(frozen=True, order=True)
class Experiment:
    task: str
    audio_rate: int | None
    video_rate: int | None
    method: str
    seed: int

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; known tasks: {', '.join(TASKS)}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; known methods: {', '.join(METHODS)}")
        needs_audio = self.task in ("asr", "avsr")
        needs_video = self.task in ("vsr", "avsr")
        if needs_audio != (self.audio_rate is not None) or needs_video != (self.video_rate is not None):
            raise ValueError(
                f"task {self.task!r} takes audio rate: {needs_audio}, video rate: {needs_video}; "
                f"got audio_rate={self.audio_rate}, video_rate={self.video_rate}"
            )

    @property
    def rates(self) -> str:
        audio = f"a{self.audio_rate}" if self.audio_rate is not None else ""
        video = f"v{self.video_rate}" if self.video_rate is not None else ""
        return audio + video

    @property
    def name(self) -> str:
        return f"{self.task}-{self.rates}-{self.method}-s{self.seed}"

    @property
    def trained(self) -> Experiment:
        """The experiment whose training run gives this one's checkpoint (ACT reuses the baseline's)."""
        return self if self.method in TRAINED_METHODS else replace(self, method="baseline")

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m, rate in (("audio", self.audio_rate), ("video", self.video_rate)) if rate)


def parse_name(name: str) -> Experiment:
    match = _NAME.match(name)
    if not match:
        raise ValueError(f"not an experiment name: {name!r} (expected e.g. asr-a4-baseline-s0)")
    return Experiment(
        task=match["task"],
        audio_rate=int(match["a"]) if match["a"] else None,
        video_rate=int(match["v"]) if match["v"] else None,
        method=match["method"],
        seed=int(match["seed"]),
    )


def build_grid(params: Mapping[str, Any]) -> list[Experiment]:
    """Every experiment of the grid in params.yaml, in a stable order."""
    grid = params["grid"]
    settings = [
        *[("asr", rate, None) for rate in grid["asr_audio_rates"]],
        *[("vsr", None, rate) for rate in grid["vsr_video_rates"]],
        *[("avsr", audio, video) for audio, video in grid["avsr_rates"]],
    ]
    experiments = {
        Experiment(task, audio, video, method, seed)
        for task, audio, video in settings
        for method in grid["methods"]
        for seed in grid["seeds"]
    }
    return sorted(
        experiments,
        key=lambda e: (TASKS.index(e.task), e.audio_rate or 0, e.video_rate or 0, e.method, e.seed),
    )
