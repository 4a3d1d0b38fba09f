"""The main WER table (CSV, Markdown, LaTeX), WER against SNR, and the paper's numbers beside ours."""

import argparse
from pathlib import Path

import pandas as pd

from avsr_sinks.report.summary import write_main_tables, write_paper_tables, write_robustness_tables


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--wer-csv", type=Path, required=True, help="results/tables/wer.csv")
    ap.add_argument("--paper-results", type=Path, required=True, help="references/paper_results.yaml")
    ap.add_argument("--main", type=Path, nargs=3, required=True, metavar=("CSV", "MD", "TEX"))
    ap.add_argument("--robustness", type=Path, nargs=2, required=True, metavar=("CSV", "MD"))
    ap.add_argument("--paper-vs-reproduced", type=Path, nargs=2, required=True, metavar=("CSV", "MD"))
    args = ap.parse_args()
    wer = pd.read_csv(args.wer_csv)
    print(write_main_tables(wer, *args.main).to_string(index=False))
    print(write_robustness_tables(wer, *args.robustness).to_string(index=False))
    print(write_paper_tables(wer, args.paper_results, *args.paper_vs_reproduced).to_string(index=False))


if __name__ == "__main__":
    main()
