"""Pretrain the embedded default's video encoder on the synthetic training split (frame visemes)."""

import json

from avsr_sinks import cli
from avsr_sinks.data.manifest import read_split
from avsr_sinks.io import write_json_atomic
from avsr_sinks.video_pretrain import VideoPretrainConfig, pretrain_video_encoder


def main() -> None:
    ap = cli.model_build_parser(__doc__)
    args = ap.parse_args()
    params = cli.start(args)
    settings = params["video_encoder"]["pretrain"]
    cfg = VideoPretrainConfig(**{**settings, "channels": tuple(settings["channels"])})
    on_bad = params["corpus"]["on_bad_sample"]
    train = read_split(args.corpus_dir, "train", on_bad)
    val = read_split(args.corpus_dir, "val", on_bad)
    summary = pretrain_video_encoder(cfg, train, val, args.out_dir, args.log_csv)
    write_json_atomic(args.summary, {**summary, "config": settings})
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    cli.run(main)
