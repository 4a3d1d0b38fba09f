"""How much of the transcript a trained model's projected tokens carry, against what the LLM makes of them.

Reads one checkpoint on a split twice: the CTC head's best path over the projected tokens of one
modality (no LLM), and, when given, the pipeline's own evaluation of the same checkpoint (its
``results/eval/<experiment>/<condition>.json``). A large gap means the tokens carry the words and the LLM
does not read them; a small one that the encoder and projector are the limit. Writes a JSON:

    python bench/ctc_readout.py --experiment asr-a4-baseline-s0 \\
        --checkpoint results/checkpoints/asr-a4-baseline-s0 --corpus-dir data/corpus/synth \\
        --features audio=data/features/synth/whisper-tiny.en-w10/test-clean \\
        --evaluation results/eval/asr-a4-baseline-s0/clean.json --out results/bench/ctc_readout.json
"""

from __future__ import annotations

import json
from pathlib import Path

from avsr_sinks import cli
from avsr_sinks.decode import word_error_rate
from avsr_sinks.features import collate_features
from avsr_sinks.io import write_json_atomic


def main() -> None:
    ap = cli.checkpoint_parser(__doc__)
    ap.add_argument("--split", default="test")
    ap.add_argument("--modality", choices=["audio", "video"], default="audio")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--evaluation", type=Path, help="the pipeline's evaluation JSON of this checkpoint")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    params = cli.start(args)
    experiment, dataset, model = cli.checkpoint_on_split(args, params, args.split)
    model.eval()
    references, readouts = [], []
    for start in range(0, len(dataset), args.batch_size):
        batch = collate_features(
            [dataset[i] for i in range(start, min(start + args.batch_size, len(dataset)))]
        )
        readouts += model.ctc_greedy(batch["features"], args.modality)
        references += batch["transcripts"]
    result = {
        "experiment": experiment.name,
        "checkpoint": str(args.checkpoint),
        "split": args.split,
        "modality": args.modality,
        "ctc_greedy": word_error_rate(references, readouts),
    }
    if args.evaluation is not None:
        evaluation = json.loads(args.evaluation.read_text())
        result["llm_decoding"] = {k: evaluation[k] for k in ("condition", "wer", "utterances")}
    write_json_atomic(args.out, result)
    line = f"{experiment.name} {args.split}: CTC best path WER {100 * result['ctc_greedy']['wer']:.2f}%"
    if "llm_decoding" in result:
        line += f", LLM decoding {100 * result['llm_decoding']['wer']:.2f}%"
    print(line)


if __name__ == "__main__":
    main()
