"""Pretrain the embedded default's video encoder on the synthetic training split (frame visemes)."""

import json
from pathlib import Path

from avsr_sinks.data.validation import read_usable
from avsr_sinks.embedded.video_pretrain import VideoPretrainConfig, pretrain_video_encoder
from avsr_sinks.io import write_json_atomic
from avsr_sinks.workflow import cli


def main() -> None:
    ap = cli.model_build_parser(__doc__)
    ap.add_argument("--train-utterances", type=Path, required=True, help="the corpus check's train list")
    ap.add_argument("--val-utterances", type=Path, required=True, help="the corpus check's val list")
    args = ap.parse_args()
    params = cli.start(args)
    settings = params["video_encoder"]["pretrain"]
    cfg = VideoPretrainConfig(**{**settings, "channels": tuple(settings["channels"])})
    train = read_usable(args.train_utterances, args.corpus_dir)
    val = read_usable(args.val_utterances, args.corpus_dir)
    summary = pretrain_video_encoder(cfg, train, val, args.out_dir, args.log_csv)
    write_json_atomic(args.summary, {**summary, "config": settings})
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    cli.run(main)
