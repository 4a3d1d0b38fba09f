"""The corpus check's first pass over one split: label rows and media (data/validation.py)."""

from pathlib import Path

from avsr_sinks.data.validation import check_split, write_skip_report, write_usable
from avsr_sinks.workflow import cli
from avsr_sinks.workflow.corpus_check import corpus_rules


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--corpus-dir", type=Path, required=True)
    ap.add_argument("--split", required=True, choices=["train", "val", "test"])
    ap.add_argument("--out-usable", type=Path, required=True)
    ap.add_argument("--out-skipped", type=Path, required=True)
    args = ap.parse_args()
    params = cli.start(args)
    check = check_split(args.corpus_dir, args.split, corpus_rules(params))
    write_skip_report(args.out_skipped, check.problems)
    write_usable(args.out_usable, check.usable)
    print(
        f"{args.split}: {len(check.usable)} of {check.rows} utterances usable, {len(check.problems)} skipped"
    )


if __name__ == "__main__":
    cli.run(main)
