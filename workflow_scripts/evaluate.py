"""Decode one experiment's test split under one condition and score it (WER)."""

from pathlib import Path

from avsr_sinks import cli
from avsr_sinks.data.manifest import read_split
from avsr_sinks.decode import decode_dataset, write_evaluation
from avsr_sinks.experiment import load_checkpoint
from avsr_sinks.features import FeatureDataset, FeatureStore
from avsr_sinks.grid import parse_name
from avsr_sinks.io import git_commit
from avsr_sinks.records import eval_record


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--corpus-dir", type=Path, required=True)
    ap.add_argument("--audio-features", type=Path, required=True)
    ap.add_argument("--condition", required=True)
    ap.add_argument("--out-json", type=Path, required=True)
    ap.add_argument("--out-csv", type=Path, required=True)
    args = ap.parse_args()
    params = cli.start(args)
    experiment = parse_name(args.experiment)
    transcripts = {u.uid: u.transcript for u in read_split(args.corpus_dir, "test", check_media=False)}
    dataset = FeatureDataset({"audio": FeatureStore(args.audio_features)}, transcripts)
    model = load_checkpoint(args.checkpoint, params, experiment, {"audio": dataset[0][1]["audio"].shape[1]})
    dec = params["decode"]
    hyps = decode_dataset(model, dataset, dec["batch_size"], dec["beam_size"], dec["max_new_tokens"])
    record = {**eval_record(params, experiment), "condition": args.condition, "git_commit": git_commit()}
    scores = write_evaluation(hyps, args.out_json, args.out_csv, record)
    print(
        f"{experiment.name} {args.condition}: WER {100 * scores['wer']:.2f}%"
        f" over {scores['utterances']} utterances"
    )


if __name__ == "__main__":
    main()
