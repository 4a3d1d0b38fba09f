"""Install the shipped pretrained LM (llm.source: shipped) after checking its hashes and build settings."""

from pathlib import Path

from avsr_sinks import cli
from avsr_sinks.lm_asset import install_asset


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--asset-dir", type=Path, required=True)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--reports-dir", type=Path, required=True, help="where the build's summaries and logs go")
    args = ap.parse_args()
    params = cli.start(args)
    install_asset(params, args.asset_dir, args.out_dir, args.reports_dir)
    print(f"installed the shipped LM from {args.asset_dir} into {args.out_dir}")


if __name__ == "__main__":
    cli.run(main)
