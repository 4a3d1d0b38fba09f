"""Check an AVSR corpus (labels + media) before a long run; exit 1 when problems are found.

Usage: python workflow_scripts/check_corpus.py ROOT [--splits train val test] [--sample N] [--no-decode]
    [--tolerance 0.1] [--json OUT]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from avsr_sinks.data.manifest import SPLITS, check_corpus, format_summary, write_summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="corpus root holding labels/{split}.csv and the media")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), help="splits to check")
    parser.add_argument("--sample", type=int, default=None, help="decode only N random utterances per split")
    parser.add_argument("--seed", type=int, default=0, help="seed for --sample")
    parser.add_argument("--no-decode", action="store_true", help="check labels and file presence only")
    parser.add_argument("--tolerance", type=float, default=0.1, help="allowed audio/video length gap (s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary as JSON here")
    parser.add_argument("--max-problems", type=int, default=50, help="problems to print (all go to --json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if not args.root.is_dir():
        print(f"error: corpus root {args.root} is not a folder", file=sys.stderr)
        return 2
    summary = check_corpus(
        args.root,
        args.splits,
        decode_media=not args.no_decode,
        sample=args.sample,
        seed=args.seed,
        av_tolerance_s=args.tolerance,
    )
    print(format_summary(summary, args.max_problems))
    if args.json is not None:
        write_summary(args.json, summary)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
