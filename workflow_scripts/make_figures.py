"""Draw every figure from the saved analysis arrays alone (no model is run)."""

import argparse
from pathlib import Path

from avsr_sinks.report.figures import draw_all, write_index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--arrays", type=Path, nargs="+", required=True, help="results/analysis/<exp>/arrays.npz")
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--index", type=Path, required=True, help="the JSON list of the figures drawn")
    args = ap.parse_args()
    figures = draw_all(args.arrays, args.out_dir)
    write_index(args.index, figures)
    print(f"{len(figures)} figure files in {args.out_dir}")


if __name__ == "__main__":
    main()
