"""The paper's claims checked against the run's sink and WER tables (CSV and Markdown)."""

import argparse
from pathlib import Path

from avsr_sinks.report.claims import write_claims_tables


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sinks-csv", type=Path, required=True, help="results/tables/sinks.csv")
    ap.add_argument("--wer-csv", type=Path, required=True, help="results/tables/wer.csv")
    ap.add_argument("--out-csv", type=Path, required=True)
    ap.add_argument("--out-md", type=Path, required=True)
    args = ap.parse_args()
    table = write_claims_tables(args.sinks_csv, args.wer_csv, args.out_csv, args.out_md)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
