"""Find the heads ACT calibrates for one baseline checkpoint, on the validation split."""

from pathlib import Path

from avsr_sinks import cli
from avsr_sinks.act_search import search_act_heads
from avsr_sinks.data.manifest import read_split
from avsr_sinks.experiment import load_checkpoint
from avsr_sinks.features import FeatureDataset
from avsr_sinks.grid import parse_name
from avsr_sinks.io import git_commit, write_json_atomic
from avsr_sinks.records import eval_record


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--experiment", required=True, help="an ACT experiment, e.g. asr-a4-act-s0")
    ap.add_argument("--checkpoint", type=Path, required=True, help="its baseline checkpoint")
    ap.add_argument("--corpus-dir", type=Path, required=True)
    ap.add_argument(
        "--features", type=cli.modality_path, action="append", default=[], metavar="MODALITY=PATH"
    )
    ap.add_argument("--out-json", type=Path, required=True)
    args = ap.parse_args()
    params = cli.start(args)
    experiment = parse_name(args.experiment)
    if experiment.method != "act":
        raise SystemExit(f"--experiment {experiment.name}: the head search is for ACT experiments only")
    transcripts = {u.uid: u.transcript for u in read_split(args.corpus_dir, "val", check_media=False)}
    dataset = FeatureDataset(cli.feature_stores(args.features, experiment.modalities), transcripts)
    widths = {m: features.shape[1] for m, features in dataset[0][1].items()}
    model = load_checkpoint(args.checkpoint, params, experiment, widths)
    result = search_act_heads(model, dataset, params["act"], params["decode"])
    write_json_atomic(
        args.out_json, {**eval_record(params, experiment), **result, "git_commit": git_commit()}
    )
    print(f"{experiment.name}: kept {result['kept_heads']} of {len(result['candidates'])} candidate heads")


if __name__ == "__main__":
    main()
