"""Find the heads ACT calibrates for one baseline checkpoint, on the validation split."""

from pathlib import Path

from avsr_sinks import cli, experiment_inputs
from avsr_sinks.act_search import search_act_heads
from avsr_sinks.grid import parse_name
from avsr_sinks.io import git_commit, write_json_atomic
from avsr_sinks.records import eval_record


def main() -> None:
    ap = experiment_inputs.checkpoint_parser(__doc__)
    ap.add_argument("--out-json", type=Path, required=True)
    args = ap.parse_args()
    params = cli.start(args)
    if parse_name(args.experiment).method != "act":
        raise SystemExit(f"--experiment {args.experiment}: the head search is for ACT experiments only")
    experiment, dataset, model = experiment_inputs.checkpoint_on_split(args, params)
    result = search_act_heads(model, dataset, params["act"], params["decode"])
    write_json_atomic(
        args.out_json, {**eval_record(params, experiment), **result, "git_commit": git_commit()}
    )
    print(f"{experiment.name}: kept {result['kept_heads']} of {len(result['candidates'])} candidate heads")


if __name__ == "__main__":
    cli.run(main)
