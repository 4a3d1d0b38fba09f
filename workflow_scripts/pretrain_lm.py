"""Train the tokenizer and pretrain the embedded default's small Llama on text (never val/test sentences)."""

import json

from avsr_sinks import cli
from avsr_sinks.experiment import lm_pretrain_config, lm_pretraining_text
from avsr_sinks.io import write_json_atomic
from avsr_sinks.lm import pretrain_lm, train_tokenizer


def main() -> None:
    ap = cli.model_build_parser(__doc__)
    args = ap.parse_args()
    params = cli.start(args)
    text, heldout = lm_pretraining_text(params, args.corpus_dir)
    tokenizer = train_tokenizer(text, params["llm"]["tokenizer_vocab_size"])
    summary = pretrain_lm(lm_pretrain_config(params), tokenizer, text, heldout, args.out_dir, args.log_csv)
    summary.update(train_sentences=len(text), heldout_sentences=len(heldout), vocab_size=len(tokenizer))
    write_json_atomic(args.summary, summary)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    cli.run(main)
