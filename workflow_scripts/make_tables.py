"""Gather the evaluation files into the WER tables (CSV and Markdown)."""

import argparse
from pathlib import Path

from avsr_sinks.report.tables import write_wer_tables


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--eval-files", type=Path, nargs="+", required=True)
    ap.add_argument("--out-csv", type=Path, required=True)
    ap.add_argument("--out-md", type=Path, required=True)
    args = ap.parse_args()
    table = write_wer_tables(args.eval_files, args.out_csv, args.out_md)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
