"""Import a checkpoint released by the Llama-AVSR authors (.pth, or a Lightning .ckpt) as a checkpoint folder.

The checkpoint fills the slot of one experiment (--experiment, or the checkpoint's task at the rates
given by --audio-rate/--video-rate, method baseline, seed 0) under the given params, which must describe
the checkpoint's model (configs/paper.yaml does for the attention-sink paper's Llama-3.2-3B checkpoints).
"""

from pathlib import Path

from avsr_sinks.importers.llama_avsr_checkpoint import ImportRefusedError
from avsr_sinks.workflow import cli
from avsr_sinks.workflow.import_stage import import_checkpoint_file


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--checkpoint", type=Path, required=True, help="the authors' .pth or .ckpt file")
    ap.add_argument("--out", type=Path, required=True, help="checkpoint folder to create (atomically)")
    ap.add_argument("--experiment", help="experiment name, e.g. vsr-v5-baseline-s0")
    ap.add_argument("--audio-rate", type=int, help="audio compression rate (average pooling hides it)")
    ap.add_argument("--video-rate", type=int, help="video compression rate (average pooling hides it)")
    ap.add_argument("--llm", type=Path, help="the base LLM's folder to check against (default: llm.path)")
    args = ap.parse_args()
    params = cli.start(args)
    try:
        experiment = import_checkpoint_file(
            args.checkpoint, args.out, params, args.experiment, args.audio_rate, args.video_rate, args.llm
        )
    except ImportRefusedError as err:
        raise SystemExit(f"refused: {err}") from err
    print(f"wrote {args.out} as {experiment.name}")


if __name__ == "__main__":
    cli.run(main)
