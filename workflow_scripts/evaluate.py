"""Decode one experiment's test split under one condition and score it (WER)."""

from pathlib import Path

from avsr_sinks import cli, experiment_inputs
from avsr_sinks.decode import decode_dataset, write_evaluation
from avsr_sinks.experiment import method_context
from avsr_sinks.io import git_commit
from avsr_sinks.pipeline import TEXT_ONLY
from avsr_sinks.records import eval_record


def main() -> None:
    ap = experiment_inputs.checkpoint_parser(__doc__)
    ap.add_argument("--act-heads", type=Path, help="ACT experiments: the heads.json of their head search")
    ap.add_argument("--condition", required=True)
    ap.add_argument("--out-json", type=Path, required=True)
    ap.add_argument("--out-csv", type=Path, required=True)
    args = ap.parse_args()
    params = cli.start(args)
    experiment, dataset, model = experiment_inputs.checkpoint_on_split(args, params)
    dec = params["decode"]
    with method_context(model, experiment, params, args.act_heads) as heads:
        hyps = decode_dataset(
            model,
            dataset,
            dec["batch_size"],
            dec["beam_size"],
            dec["max_new_tokens"],
            text_only=args.condition == TEXT_ONLY,
        )
    record = {
        **eval_record(params, experiment),
        **({"act_heads": heads} if heads is not None else {}),
        "condition": args.condition,
        "git_commit": git_commit(),
    }
    scores = write_evaluation(hyps, args.out_json, args.out_csv, record)
    print(
        f"{experiment.name} {args.condition}: WER {100 * scores['wer']:.2f}%"
        f" over {scores['utterances']} utterances"
    )


if __name__ == "__main__":
    cli.run(main)
