"""Cache a frozen encoder's outputs (audio or video) for one corpus split and test condition."""

from pathlib import Path

from avsr_sinks import cli
from avsr_sinks.data.media import read_audio, read_video
from avsr_sinks.data.noise import NoiseBank, mix_condition, parse_condition
from avsr_sinks.data.validation import read_usable
from avsr_sinks.encoders.video import load_video_encoder
from avsr_sinks.encoders.whisper import load_audio_encoder
from avsr_sinks.features import extract_features


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--modality", required=True, choices=["audio", "video"])
    ap.add_argument("--corpus-dir", type=Path, required=True)
    ap.add_argument("--utterances", type=Path, required=True, help="the corpus check's list for the split")
    ap.add_argument("--babble-utterances", type=Path, help="babble conditions: the train split's list")
    ap.add_argument("--encoder-dir", type=Path, required=True)
    ap.add_argument("--split", required=True, choices=["train", "val", "test"])
    ap.add_argument("--condition", required=True)
    ap.add_argument("--out-dir", type=Path, required=True)
    args = ap.parse_args()
    params = cli.start(args)
    noise = parse_condition(args.condition)
    if args.modality == "video" and noise is not None:
        raise SystemExit(f"--condition {args.condition}: noise conditions change the audio only")
    if args.modality == "audio":
        enc = params["audio_encoder"]
        encoder = load_audio_encoder(args.encoder_dir, enc["window_seconds"], enc["hub_id"])
    else:
        enc = params["video_encoder"]
        encoder = load_video_encoder(enc, args.encoder_dir)
    utterances = {u.uid: u for u in read_usable(args.utterances, args.corpus_dir)}
    if args.modality == "audio":
        if noise is None:

            def load(uid):
                return read_audio(utterances[uid].audio_path)
        else:
            kind, snrs_db = noise
            # Babble from training speakers only, so no test utterance leaks into the noise.
            if kind == "babble" and args.babble_utterances is None:
                raise SystemExit(f"--condition {args.condition}: babble needs --babble-utterances")
            bank = NoiseBank(read_usable(args.babble_utterances, args.corpus_dir) if kind == "babble" else ())

            def load(uid):
                return mix_condition(bank, read_audio(utterances[uid].audio_path), kind, snrs_db, uid)
    else:

        def load(uid):
            return read_video(utterances[uid].video_path)

    manifest = {
        "encoder": encoder.identity(),
        "frame_rate": encoder.frame_rate,
        "corpus": params["corpus"]["name"],
        "split": args.split,
        "condition": args.condition,
    }
    extract_features(list(utterances), load, encoder.encode, args.out_dir, manifest, enc["batch_size"])


if __name__ == "__main__":
    cli.run(main)
