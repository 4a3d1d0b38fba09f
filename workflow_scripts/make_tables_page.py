"""Every results table (CSV) on one HTML page, the report's view of the tables."""

import argparse
from pathlib import Path

from avsr_sinks.report.tables_page import write_tables_page
from avsr_sinks.workflow import cli


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tables", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    write_tables_page(args.tables, args.out)
    print(f"wrote {args.out} ({len(args.tables)} tables)")


if __name__ == "__main__":
    cli.run(main)
