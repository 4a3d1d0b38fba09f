"""The WER tables from the evaluation files, or the sink tables from the analyses (CSV and Markdown)."""

import argparse
from pathlib import Path

from avsr_sinks.report.tables import write_sink_tables, write_wer_tables


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    inputs = ap.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--eval-files", type=Path, nargs="+", help="results/eval/<exp>/<condition>.json")
    inputs.add_argument("--analysis-files", type=Path, nargs="+", help="results/analysis/<exp>/metrics.json")
    ap.add_argument("--out-csv", type=Path, required=True)
    ap.add_argument("--out-md", type=Path, required=True)
    args = ap.parse_args()
    if args.eval_files:
        table = write_wer_tables(args.eval_files, args.out_csv, args.out_md)
    else:
        table = write_sink_tables(args.analysis_files, args.out_csv, args.out_md)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
