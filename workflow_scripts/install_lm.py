"""Install the shipped pretrained LM (llm.source: shipped) after checking its hashes and build settings."""

from pathlib import Path

from avsr_sinks import cli
from avsr_sinks.lm_asset import install_asset


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--asset-dir", type=Path, required=True)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--summary", type=Path, required=True)
    ap.add_argument("--log-csv", type=Path, required=True)
    args = ap.parse_args()
    params = cli.start(args)
    install_asset(params, args.asset_dir, args.out_dir, args.summary, args.log_csv)
    print(f"installed the shipped LM from {args.asset_dir} into {args.out_dir}")


if __name__ == "__main__":
    cli.run(main)
