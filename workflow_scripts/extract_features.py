"""Cache the frozen audio encoder's outputs for one corpus split and test condition."""

from pathlib import Path

from avsr_sinks import cli
from avsr_sinks.data.manifest import read_split
from avsr_sinks.data.media import read_audio
from avsr_sinks.encoders.whisper import load_audio_encoder
from avsr_sinks.features import extract_features


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--corpus-dir", type=Path, required=True)
    ap.add_argument("--encoder-dir", type=Path, required=True)
    ap.add_argument("--split", required=True, choices=["train", "val", "test"])
    ap.add_argument("--condition", required=True)
    ap.add_argument("--out-dir", type=Path, required=True)
    args = ap.parse_args()
    params = cli.start(args)
    enc = params["audio_encoder"]
    encoder = load_audio_encoder(args.encoder_dir, enc["window_seconds"], enc["hub_id"])
    utterances = {
        u.uid: u for u in read_split(args.corpus_dir, args.split, params["corpus"]["on_bad_sample"])
    }
    manifest = {
        "encoder": encoder.identity(),
        "frame_rate": encoder.frame_rate,
        "corpus": params["corpus"]["name"],
        "split": args.split,
        "condition": args.condition,
    }
    extract_features(
        list(utterances),
        lambda uid: read_audio(utterances[uid].audio_path),
        encoder.encode,
        args.out_dir,
        manifest,
        batch_size=enc["batch_size"],
    )


if __name__ == "__main__":
    main()
