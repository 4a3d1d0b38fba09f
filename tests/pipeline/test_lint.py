"""`snakemake --lint` finds nothing but the conda/container lint, which the Snakefile justifies."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO
from tests.pipeline.workspace import snakemake

JUSTIFIED = "Specify a conda environment or container for each rule."


def lint(work: Path) -> tuple[set[str], dict[str, set[str]]]:
    """The workflow's rules in ``work`` and what ``snakemake --lint`` finds in each linted rule (key
    ``rule NAME``) or snakefile (key ``snakefile PATH``). Fails if the workflow does not load, so that no
    findings means a clean lint, not a lint that never ran."""
    listed = snakemake(["--list-rules"], work)
    assert listed.returncode == 0, listed.stderr[-3000:]
    result = snakemake(["--lint"], work)
    output = result.stdout + result.stderr
    # Snakemake exits 1 whenever it has lints; a workflow that fails to load exits 1 as well, without them.
    assert not re.search(r"Traceback|Error|Exception", output), output[-3000:]
    findings: dict[str, set[str]] = {}
    for block in re.split(r"^Lints for ", output, flags=re.MULTILINE)[1:]:
        header = re.match(r"(rule \w+|snakefile .+?)(?: \(line \d+, .+?\))?:$", block.splitlines()[0])
        assert header, block.splitlines()[0]
        findings[header.group(1)] = set(re.findall(r"^\s+\* (.+?):$", block, flags=re.MULTILINE))
    assert (result.returncode == 0) == (not findings), (result.returncode, findings)
    return set(listed.stdout.split()), findings


def test_snakemake_lint_has_only_the_justified_finding() -> None:
    rules, findings = lint(REPO)
    # Every rule that runs a command is linted (``all`` runs none), and each has the one justified finding.
    assert len(rules) > 10, rules
    assert findings == {f"rule {name}": {JUSTIFIED} for name in rules - {"all"}}
    assert "conda environment or container per rule" in (REPO / "Snakefile").read_text()
