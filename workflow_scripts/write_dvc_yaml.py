"""Write dvc.yaml from params.yaml's grid (the same grid function the Snakefile uses)."""

import argparse
from pathlib import Path

from avsr_sinks.io import write_text_atomic
from avsr_sinks.settings.config import load_params
from avsr_sinks.workflow.dvc_yaml import render


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--out", type=Path, default=Path("dvc.yaml"))
    args = ap.parse_args()
    write_text_atomic(args.out, render(load_params([args.params])))


if __name__ == "__main__":
    main()
