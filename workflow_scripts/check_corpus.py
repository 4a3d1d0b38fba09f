"""Check a corpus (labels and media) before a long run, with the pipeline's own checks; exit 1 when it
finds problems, 2 when the corpus root is unusable.

Usage: python workflow_scripts/check_corpus.py [ROOT] [--params params.yaml [overlays]] [--splits ...]
    [--json OUT]
ROOT defaults to corpus.root. The pipeline's corpus check stages run the same two passes with the same
settings, so what this passes they accept and what it refuses they refuse, with the same message.
"""

import argparse
import logging
import sys
from pathlib import Path

from avsr_sinks.config import load_params
from avsr_sinks.data.manifest import DataError
from avsr_sinks.data.validation import SPLITS, CorpusRules, check_corpus, format_summary
from avsr_sinks.io import write_json_atomic
from avsr_sinks.modeling.llm import load_tokenizer


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, nargs="?", help="corpus root holding labels/ and the media")
    ap.add_argument("--params", nargs="+", default=["params.yaml"], help="params.yaml and any overlays")
    ap.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    ap.add_argument("--json", type=Path, help="also write the summary as JSON here")
    ap.add_argument("--max-problems", type=int, default=50, help="problems to print (all go to --json)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    llm = Path(params["llm"]["path"])
    tokenizer = load_tokenizer(llm) if (llm / "config.json").is_file() else None
    try:
        summary = check_corpus(
            args.root or Path(params["corpus"]["root"]),
            CorpusRules.from_params(params),
            args.splits,
            tokenizer,
        )
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary, args.max_problems))
    if args.json is not None:
        write_json_atomic(args.json, summary)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
