"""Decode one experiment's test split under one condition and score it (WER)."""

from pathlib import Path

from avsr_sinks.workflow import cli, experiment_inputs
from avsr_sinks.workflow.checkpoint_stages import evaluate_stage


def main() -> None:
    ap = experiment_inputs.checkpoint_parser(__doc__)
    ap.add_argument("--act-heads", type=Path, help="ACT experiments: the heads.json of their head search")
    ap.add_argument("--condition", required=True)
    ap.add_argument("--out-json", type=Path, required=True)
    ap.add_argument("--out-csv", type=Path, required=True)
    args = ap.parse_args()
    spec, dataset, model = experiment_inputs.checkpoint_on_split(args, cli.start(args))
    scores = evaluate_stage(spec, dataset, model, args.condition, args.act_heads, args.out_json, args.out_csv)
    print(
        f"{spec.experiment.name} {args.condition}: WER {100 * scores['wer']:.2f}%"
        f" over {scores['utterances']} utterances"
    )


if __name__ == "__main__":
    cli.run(main)
