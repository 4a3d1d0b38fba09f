"""Write the shipped-LM asset (weights, tokenizer, reports, pinned hashes) from a pretrain_lm/stretch_lm
build."""

import json
from pathlib import Path

from avsr_sinks import cli
from avsr_sinks.lm_asset import write_asset


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--model-dir", type=Path, required=True)
    ap.add_argument("--reports-dir", type=Path, required=True, help="the build's summaries and logs")
    ap.add_argument("--asset-dir", type=Path, required=True)
    args = ap.parse_args()
    params = cli.start(args)
    manifest = write_asset(params, args.model_dir, args.reports_dir, args.asset_dir)
    print(json.dumps(manifest["sha256"], indent=2))


if __name__ == "__main__":
    cli.run(main)
