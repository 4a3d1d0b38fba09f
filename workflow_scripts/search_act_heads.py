"""Find the heads ACT calibrates for one baseline checkpoint, on the validation split."""

from pathlib import Path

from avsr_sinks.settings.grid import parse_name
from avsr_sinks.workflow import cli, experiment_inputs
from avsr_sinks.workflow.checkpoint_stages import search_heads_stage


def main() -> None:
    ap = experiment_inputs.checkpoint_parser(__doc__)
    ap.add_argument("--out-json", type=Path, required=True)
    args = ap.parse_args()
    params = cli.start(args)
    if parse_name(args.experiment).method != "act":
        raise SystemExit(f"--experiment {args.experiment}: the head search is for ACT experiments only")
    spec, dataset, model = experiment_inputs.checkpoint_on_split(args, params)
    result = search_heads_stage(spec, dataset, model, args.out_json)
    print(
        f"{spec.experiment.name}: kept {result['kept_heads']} of {len(result['candidates'])} candidate heads"
    )


if __name__ == "__main__":
    cli.run(main)
