"""Decode one experiment's test split under one condition and score it (WER)."""

from pathlib import Path

from avsr_sinks import cli
from avsr_sinks.data.manifest import read_split
from avsr_sinks.decode import decode_dataset, write_evaluation
from avsr_sinks.experiment import load_checkpoint, method_context
from avsr_sinks.features import FeatureDataset
from avsr_sinks.grid import parse_name
from avsr_sinks.io import git_commit
from avsr_sinks.pipeline import TEXT_ONLY
from avsr_sinks.records import eval_record


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--corpus-dir", type=Path, required=True)
    ap.add_argument(
        "--features", type=cli.modality_path, action="append", default=[], metavar="MODALITY=PATH"
    )
    ap.add_argument("--act-heads", type=Path, help="ACT experiments: the heads.json of their head search")
    ap.add_argument("--condition", required=True)
    ap.add_argument("--out-json", type=Path, required=True)
    ap.add_argument("--out-csv", type=Path, required=True)
    args = ap.parse_args()
    params = cli.start(args)
    experiment = parse_name(args.experiment)
    transcripts = {u.uid: u.transcript for u in read_split(args.corpus_dir, "test", check_media=False)}
    dataset = FeatureDataset(cli.feature_stores(args.features, experiment.modalities), transcripts)
    widths = {m: features.shape[1] for m, features in dataset[0][1].items()}
    model = load_checkpoint(args.checkpoint, params, experiment, widths)
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
    main()
