"""Train the tokenizer and pretrain the embedded default's small Llama on text (never val/test sentences)."""

import json
from pathlib import Path

from avsr_sinks import cli
from avsr_sinks.data.manifest import read_split
from avsr_sinks.data.text import generate_text_corpus
from avsr_sinks.experiment import lm_pretrain_config
from avsr_sinks.io import write_json_atomic
from avsr_sinks.lm import pretrain_lm, train_tokenizer


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--corpus-dir", type=Path, required=True)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--log-csv", type=Path, required=True)
    ap.add_argument("--summary", type=Path, required=True)
    args = ap.parse_args()
    params = cli.start(args)
    cfg = lm_pretrain_config(params)
    splits = {
        s: [u.transcript for u in read_split(args.corpus_dir, s, check_media=False)]
        for s in ("train", "val", "test")
    }
    held_out = set(splits["val"]) | set(splits["test"])
    synth = params["corpus"]["synth"]
    extra = generate_text_corpus(
        seed=cfg.seed,
        n_sentences=params["llm"]["pretrain"]["extra_sentences"],
        exclude=held_out,
        vocab_size=synth["vocab_size"],
        min_words=synth["min_words"],
        max_words=synth["max_words"],
    )
    text = splits["train"] + extra
    tokenizer = train_tokenizer(text, params["llm"]["tokenizer_vocab_size"])
    summary = pretrain_lm(cfg, tokenizer, text, splits["val"], args.out_dir, args.log_csv)
    summary.update(train_sentences=len(text), heldout_sentences=len(splits["val"]), vocab_size=len(tokenizer))
    write_json_atomic(args.summary, summary)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    cli.run(main)
