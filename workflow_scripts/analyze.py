"""Attention sinks, massive activations and BOS cosine similarity of one experiment's model, on the first
utterances of the test split (teacher-forced): metrics.json and the arrays behind the figures."""

from pathlib import Path

from avsr_sinks import cli, experiment_inputs
from avsr_sinks.act import ACT
from avsr_sinks.analysis import AnalysisThresholds
from avsr_sinks.capture import collect, write_analysis
from avsr_sinks.experiment import method_context
from avsr_sinks.records import eval_record


def main() -> None:
    ap = experiment_inputs.checkpoint_parser(__doc__)
    ap.add_argument("--act-heads", type=Path, help="ACT experiments: the heads.json of their head search")
    ap.add_argument("--out-dir", type=Path, required=True, help="gets metrics.json and arrays.npz")
    args = ap.parse_args()
    params = cli.start(args)
    experiment, dataset, model = experiment_inputs.checkpoint_on_split(args, params)
    cfg = params["analysis"]
    items = [dataset[i] for i in range(min(cfg["utterances"], len(dataset)))]
    with method_context(model, experiment, params, args.act_heads) as heads:
        captured = collect(
            model, [i[1] for i in items], [i[2] for i in items], attention_functions=("eager", ACT)
        )
    thresholds = AnalysisThresholds.from_settings(cfg)
    metrics, arrays = captured.analyze(thresholds)
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
    cli.run(main)
