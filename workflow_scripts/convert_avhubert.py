"""Convert a fairseq AV-HuBERT checkpoint (e.g. large_vox_iter5.pt) into a safetensors folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from avsr_sinks.encoders.avhubert_convert import convert_avhubert
from avsr_sinks.workflow import cli


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", type=Path, required=True, help="the fairseq .pt file")
    ap.add_argument("--out", type=Path, required=True, help="folder to create (replaced atomically)")
    ap.add_argument(
        "--inert-global",
        action="append",
        default=[],
        metavar="MODULE.NAME",
        help="also admit this pickled configuration class as inert data (repeatable); for forks whose "
        "config classes live outside the omegaconf/fairseq/avhubert namespaces",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    convert_avhubert(args.checkpoint, args.out, extra_inert_globals=args.inert_global)


if __name__ == "__main__":
    cli.run(main)
