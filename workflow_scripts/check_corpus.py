"""Check a corpus (labels and media) before a long run with the pipeline's own checks and settings: what
this passes the corpus check stages accept, and what it refuses they refuse, with the same message.
Exit 1 on problems, 2 when the corpus root is unusable. ROOT defaults to corpus.root."""

import argparse
import logging
import sys
from pathlib import Path

from avsr_sinks.data.manifest import DataError
from avsr_sinks.data.validation import SPLITS, format_summary
from avsr_sinks.io import write_json_atomic
from avsr_sinks.settings.config import load_params
from avsr_sinks.workflow.corpus_check import check_configured_corpus


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("root", type=Path, nargs="?", help="corpus root holding labels/ and the media")
    ap.add_argument("--params", nargs="+", default=["params.yaml"], help="params.yaml and any overlays")
    ap.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    ap.add_argument("--json", type=Path, help="also write the summary as JSON here")
    ap.add_argument("--max-problems", type=int, default=50, help="problems to print (all go to --json)")
    args = ap.parse_args(argv)
    try:
        summary = check_configured_corpus(load_params(args.params), args.root, args.splits)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary, args.max_problems))
    if args.json is not None:
        write_json_atomic(args.json, summary)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
