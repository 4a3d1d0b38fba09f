"""Attention sinks, massive activations and BOS cosine similarity of one experiment's model, on the first
utterances of the test split (teacher-forced): metrics.json and the arrays behind the figures."""

from pathlib import Path

from avsr_sinks import cli
from avsr_sinks.act import ACT
from avsr_sinks.analysis import AnalysisThresholds, analyze_batch
from avsr_sinks.capture import collect, write_analysis
from avsr_sinks.data.manifest import read_split
from avsr_sinks.experiment import load_checkpoint, method_context
from avsr_sinks.features import FeatureDataset
from avsr_sinks.grid import parse_name
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
    ap.add_argument("--out-dir", type=Path, required=True, help="gets metrics.json and arrays.npz")
    args = ap.parse_args()
    params = cli.start(args)
    experiment = parse_name(args.experiment)
    transcripts = {u.uid: u.transcript for u in read_split(args.corpus_dir, "test", check_media=False)}
    dataset = FeatureDataset(cli.feature_stores(args.features, experiment.modalities), transcripts)
    widths = {m: features.shape[1] for m, features in dataset[0][1].items()}
    model = load_checkpoint(args.checkpoint, params, experiment, widths)
    cfg = params["analysis"]
    items = [dataset[i] for i in range(min(cfg["utterances"], len(dataset)))]
    with method_context(model, experiment, params, args.act_heads) as heads:
        captured = collect(
            model, [i[1] for i in items], [i[2] for i in items], attention_functions=("eager", ACT)
        )
    thresholds = AnalysisThresholds(cfg["sink_threshold"], cfg["massive_abs"], cfg["massive_ratio"])
    metrics, arrays = analyze_batch(
        captured.attentions,
        captured.hidden_states,
        captured.mlp_outputs,
        captured.segments,
        captured.attention_mask,
        thresholds,
        token_labels=captured.token_labels,
    )
    record = {
        **eval_record(params, experiment),
        **({"act_heads": heads} if heads is not None else {}),
        "analysis": cfg,
        "uids": [i[0] for i in items],
    }
    write_analysis(args.out_dir, {**record, **metrics}, arrays)
    shares = ", ".join(f"{100 * s:.0f}%" for s in arrays["bos_sink_share"])
    print(f"{experiment.name}: BOS sink share per layer {shares}; analysis in {args.out_dir}")


if __name__ == "__main__":
    main()
