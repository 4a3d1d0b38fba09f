"""Zero-shot Whisper transcription of a corpus split: is the (synthetic) speech intelligible?

Writes character and word error rates after lower-casing and removing punctuation.
"""

import json
import re
from pathlib import Path

import jiwer

from avsr_sinks import cli
from avsr_sinks.data.media import read_audio
from avsr_sinks.data.validation import read_usable
from avsr_sinks.encoders.whisper import transcribe
from avsr_sinks.io import write_json_atomic

CHUNK = 32  # utterances per Whisper call: bounds the memory of 30 s mel windows


def plain(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower()).split())


def by_speaker(utterances, refs: list[str], hyps: list[str]) -> dict[str, dict[str, float]]:
    """CER and WER per speaker folder (the relative path's second-to-last part), to find a bad voice."""
    groups: dict[str, list[int]] = {}
    for i, utt in enumerate(utterances):
        groups.setdefault(Path(utt.relative_path).parent.name, []).append(i)
    return {
        speaker: {
            "utterances": len(idx),
            "cer": jiwer.cer([refs[i] for i in idx], [hyps[i] for i in idx]),
            "wer": jiwer.wer([refs[i] for i in idx], [hyps[i] for i in idx]),
        }
        for speaker, idx in sorted(groups.items())
    }


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--corpus-dir", type=Path, required=True)
    ap.add_argument("--whisper-dir", type=Path, required=True)
    ap.add_argument("--utterances", type=Path, required=True, help="the corpus check's list of the split")
    ap.add_argument("--window-seconds", type=float, required=True, help="Whisper input window")
    ap.add_argument("--out-json", type=Path, required=True)
    args = ap.parse_args()
    cli.start(args)
    utterances = read_usable(args.utterances, args.corpus_dir)
    hyps: list[str] = []
    for start in range(0, len(utterances), CHUNK):
        chunk = utterances[start : start + CHUNK]
        hyps += transcribe(args.whisper_dir, [read_audio(u.audio_path) for u in chunk], args.window_seconds)
    refs = [plain(u.transcript) for u in utterances]
    hyps = [plain(h) for h in hyps]
    result = {
        "utterances_file": str(args.utterances),
        "utterances": len(refs),
        "whisper": str(args.whisper_dir),
        "window_seconds": args.window_seconds,
        "cer": jiwer.cer(refs, hyps),
        "wer": jiwer.wer(refs, hyps),
        "by_speaker": by_speaker(utterances, refs, hyps),
        "examples": [{"reference": r, "hypothesis": h} for r, h in list(zip(refs, hyps, strict=True))[:10]],
    }
    write_json_atomic(args.out_json, result)
    print(json.dumps({k: result[k] for k in ("utterances", "cer", "wer")}))


if __name__ == "__main__":
    cli.run(main)
