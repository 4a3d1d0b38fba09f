"""Generate the synthetic audio-visual corpus and its corpus card (corpus.synth in params)."""

import json
import os
import time
from pathlib import Path

from avsr_sinks.data.synth import SynthConfig, generate_corpus, write_corpus_card
from avsr_sinks.workflow import cli


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--out-dir", type=Path, required=True, help="corpus folder (replaced atomically)")
    ap.add_argument("--card-md", type=Path, required=True)
    ap.add_argument("--card-json", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    args = ap.parse_args()
    params = cli.start(args)
    cfg = SynthConfig(**params["corpus"]["synth"])
    start = time.perf_counter()
    stats = generate_corpus(cfg, args.out_dir, workers=max(1, args.workers))
    write_corpus_card(stats, args.card_md, args.card_json)
    total = stats["splits"]["total"]
    summary = {
        "utterances": total["utterances"],
        "hours": total["hours"],
        "seconds": round(time.perf_counter() - start, 1),
        "median_av_correlation": stats["av_alignment"]["median_pearson_r"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    cli.run(main)
