"""The LM's second pretraining phase: continue the copy-pretrained LM on stretched first readings."""

import json
from pathlib import Path

from avsr_sinks import cli
from avsr_sinks.experiment import lm_pretrain_config, lm_pretraining_text
from avsr_sinks.io import write_json_atomic
from avsr_sinks.lm import continue_stretched


def main() -> None:
    ap = cli.model_build_parser(__doc__)
    ap.add_argument("--model-dir", type=Path, required=True, help="the LM of the first (copy) phase")
    args = ap.parse_args()
    params = cli.start(args)
    text, heldout = lm_pretraining_text(params, args.corpus_dir)
    cfg = lm_pretrain_config(params)
    summary = continue_stretched(cfg, args.model_dir, text, heldout, args.out_dir, args.log_csv)
    summary.update(
        train_sentences=len(text), heldout_sentences=len(heldout), started_from=str(args.model_dir)
    )
    write_json_atomic(args.summary, summary)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    cli.run(main)
