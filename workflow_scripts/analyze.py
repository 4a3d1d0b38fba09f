"""Attention sinks, massive activations and BOS cosine similarity of one experiment's model, on the first
utterances of the test split (teacher-forced): metrics.json and the arrays behind the figures."""

from pathlib import Path

from avsr_sinks.workflow import cli, experiment_inputs
from avsr_sinks.workflow.checkpoint_stages import analyze_stage


def main() -> None:
    ap = experiment_inputs.checkpoint_parser(__doc__)
    ap.add_argument("--act-heads", type=Path, help="ACT experiments: the heads.json of their head search")
    ap.add_argument("--out-dir", type=Path, required=True, help="gets metrics.json and arrays.npz")
    args = ap.parse_args()
    params = cli.start(args)
    spec, dataset, model = experiment_inputs.checkpoint_on_split(args, params)
    arrays = analyze_stage(spec, dataset, model, params["analysis"], args.act_heads, args.out_dir)
    shares = ", ".join(f"{100 * s:.0f}%" for s in arrays["bos_sink_share"])
    print(f"{spec.experiment.name}: BOS sink share per layer {shares}; analysis in {args.out_dir}")


if __name__ == "__main__":
    cli.run(main)
