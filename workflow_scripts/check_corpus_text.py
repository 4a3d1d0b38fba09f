"""The corpus check's second pass over one split: transcripts against the LLM's tokenizer; writes the
split's final list of usable utterances, its skip report (both passes) and its counts."""

from pathlib import Path

from avsr_sinks.data.validation import (
    check_transcripts,
    finish_split,
    read_usable,
    tokenizer_pass,
)
from avsr_sinks.modeling.llm import load_tokenizer
from avsr_sinks.workflow import cli
from avsr_sinks.workflow.corpus_check import corpus_rules


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--corpus-dir", type=Path, required=True)
    ap.add_argument("--split", required=True, choices=["train", "val", "test"])
    ap.add_argument("--media-usable", type=Path, required=True, help="the first pass's usable list")
    ap.add_argument("--media-skipped", type=Path, required=True, help="the first pass's skip report")
    ap.add_argument("--llm-dir", type=Path, required=True)
    ap.add_argument("--out-usable", type=Path, required=True)
    ap.add_argument("--out-skipped", type=Path, required=True)
    ap.add_argument("--out-card", type=Path, required=True)
    args = ap.parse_args()
    params = cli.start(args)
    utterances = read_usable(args.media_usable, args.corpus_dir)
    tokenizer = load_tokenizer(args.llm_dir, params["llm"]["hub_id"])
    rules = corpus_rules(params)
    check = check_transcripts(utterances, *tokenizer_pass(tokenizer), rules, args.corpus_dir, args.split)
    card = finish_split(check, args.media_skipped, args.out_usable, args.out_skipped, args.out_card)
    print(f"{args.split}: {card['usable']} of {card['rows']} utterances usable, {card['skipped']} skipped")


if __name__ == "__main__":
    cli.run(main)
