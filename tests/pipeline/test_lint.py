"""`snakemake --lint` finds nothing but the conda/container lint, which the Snakefile justifies."""

from __future__ import annotations

import re

from tests.conftest import REPO
from tests.pipeline.workspace import snakemake

JUSTIFIED = "Specify a conda environment or container for each rule."


def test_snakemake_lint_has_only_the_justified_finding() -> None:
    result = snakemake(["--lint"], REPO)
    output = result.stdout + result.stderr
    findings = set(re.findall(r"^\s+\* (.+?):$", output, flags=re.MULTILINE))
    assert findings <= {JUSTIFIED}, findings
    assert "conda environment or container per rule" in (REPO / "Snakefile").read_text()
