"""Zero-shot Whisper transcription of a corpus split: is the (synthetic) speech intelligible?"""

import json
from pathlib import Path

from avsr_sinks.data.validation import read_usable
from avsr_sinks.embedded.intelligibility import whisper_error_rates
from avsr_sinks.io import write_json_atomic
from avsr_sinks.workflow import cli


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
    result = whisper_error_rates(utterances, args.whisper_dir, args.window_seconds)
    write_json_atomic(args.out_json, {"utterances_file": str(args.utterances), **result})
    print(json.dumps({k: result[k] for k in ("utterances", "cer", "wer")}))


if __name__ == "__main__":
    cli.run(main)
