"""The thresholds that decide what the analysis counts as an attention sink and as a massive activation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AnalysisThresholds:
    """PAPER.md section 5: a token is a sink in a head if alpha > ``sink`` (0.3, Gu et al.; ACT uses 0.1);
    an entry is massive if |h| > ``massive_abs`` and |h| >= ``massive_ratio`` x the layer's median |h|.

    ``min_queries``: a position counts as a sink only if at least this many real queries can see it.
    alpha_j averages over the N - j queries at or after j, so near the end of a sequence it is the
    attention of one or two queries, which passes any threshold by chance (1: the formula as published).
    """

    sink: float = 0.3
    massive_abs: float = 100.0
    massive_ratio: float = 1000.0
    min_queries: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.sink < 1.0:
            raise ValueError(f"analysis sink threshold must be in [0, 1), got {self.sink}")
        if self.min_queries < 1:
            raise ValueError(f"analysis min_sink_queries must be at least 1, got {self.min_queries}")
        if self.massive_abs < 0 or self.massive_ratio < 0:
            raise ValueError(
                f"massive-activation thresholds must be >= 0, got massive_abs={self.massive_abs}, "
                f"massive_ratio={self.massive_ratio}"
            )

    @classmethod
    def from_settings(cls, analysis: Mapping[str, Any]) -> AnalysisThresholds:
        """From params' ``analysis`` section."""
        return cls(
            analysis["sink_threshold"],
            analysis["massive_abs"],
            analysis["massive_ratio"],
            analysis["min_sink_queries"],
        )
