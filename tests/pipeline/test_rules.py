"""Every rule declares what the workflow's conventions ask of it (DESIGN.md, STYLE.md item 3)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO

# Rules that make their output from nothing but their parameters or an installed package.
NO_INPUT = {"convert_whisper", "make_corpus"}
# The bundled Whisper has nothing to configure; the claims table reads two tables by criteria in its code;
# the tables page lays out the tables it reads.
NO_PARAMS = {"convert_whisper", "claims_table", "tables_page"}
# Rules whose memory and time grow with each retry (`--retries`), the long model jobs.
SCALED = {"train", "evaluate", "act_heads", "analyze", "audio_features", "video_features"}


def _rules() -> dict[str, str]:
    """Rule name -> the text of its block, from every rules/*.smk."""
    rules = {}
    for path in sorted((REPO / "rules").glob("*.smk")):
        parts = re.split(r"^\s*rule (\w+):\n", path.read_text(), flags=re.MULTILINE)
        rules.update(dict(zip(parts[1::2], parts[2::2], strict=True)))
    return rules


RULES = _rules()


def test_every_stage_of_the_data_flow_has_a_rule() -> None:
    stages = {"make_corpus", "install_bundled_llm", "pretrain_video_encoder", "audio_features"}
    stages |= {"video_features", "check_corpus_media", "check_corpus_text"}
    stages |= {"train", "act_heads", "evaluate", "analyze", "wer_tables", "summary_tables", "sink_tables"}
    assert stages | {"claims_table", "figures"} <= set(RULES)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_declares_its_files_and_resources(rule: str) -> None:
    block = RULES[rule]
    required = ["output:", "log:", "benchmark:", "threads:", "resources:", "shell:"]
    required += [] if rule in NO_INPUT else ["input:"]
    required += [] if rule in NO_PARAMS else ["params:"]
    missing = [key for key in required if not re.search(rf"^\s+{key}", block, flags=re.MULTILINE)]
    assert not missing, f"rule {rule} lacks {missing}"
    assert "> {log:q} 2>&1" in block, f"rule {rule} does not send its output to its log"
    if rule in SCALED:
        assert "mem_mb=per_attempt(" in block and "runtime=per_attempt(" in block


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rules_only_wire_files(rule: str) -> None:
    """Python in a rule is a named function of rules/common.smk, never a lambda or inline JSON."""
    assert "lambda" not in RULES[rule] and "json." not in RULES[rule]
