"""Batched beam search against one utterance at a time (as the original Llama-AVSR code decodes), on a
trained checkpoint and the cached test features, with the hypotheses compared one by one.

The test utterances are cut into chunks of decode.batch_size; each chunk is decoded batched and then
utterance by utterance, alternating, so load drifts hit both alike. Budget: batched at least 3x the
utterances per second, with identical hypotheses.

    python bench/decoding.py [--root .] [--quick] [--out results/bench/decoding.json]
"""

from __future__ import annotations

import logging
import os
import statistics
from pathlib import Path
from typing import Any

import torch
from harness import budget, missing, model_bench_parser, spread, timed, write_result

from avsr_sinks.data.manifest import read_split
from avsr_sinks.features.store import FeatureDataset, FeatureStore, collate_features
from avsr_sinks.modeling.checkpoints import load_checkpoint
from avsr_sinks.settings.config import load_params
from avsr_sinks.settings.grid import parse_name
from avsr_sinks.settings.spec import resolve_run
from avsr_sinks.workflow.paths import checkpoint_dir, experiment_features

log = logging.getLogger("bench.decoding")


def compare(model, dataset: FeatureDataset, chunks: int, batch_size: int, beam: int, max_new: int) -> dict:
    batched_s, single_s, batched_hyps, single_hyps = [], [], [], []

    def decode(items, out: list) -> None:
        batch = collate_features(items)
        out += model.generate(batch["features"], beam_size=beam, max_new_tokens=max_new)

    decode([dataset[0]], [])  # warm-up: first-call allocations
    for c in range(chunks):
        items = [dataset[i] for i in range(c * batch_size, (c + 1) * batch_size)]
        batched_s.append(timed(lambda items=items: decode(items, batched_hyps)))
        single_s.append(timed(lambda items=items: [decode([item], single_hyps) for item in items]))
    differing = [
        {"uid": dataset.uids[i], "batched": b, "one_at_a_time": s}
        for i, (b, s) in enumerate(zip(batched_hyps, single_hyps, strict=True))
        if b != s
    ]
    utterances = chunks * batch_size
    return {
        "utterances": utterances,
        "batch_size": batch_size,
        "beam_size": beam,
        "batched_chunk": spread(batched_s),
        "one_at_a_time_chunk": spread(single_s),
        "batched_utterances_per_s": utterances / sum(batched_s),
        "one_at_a_time_utterances_per_s": utterances / sum(single_s),
        # per chunk, so a burst of load on one chunk does not decide the figure
        "speedup": statistics.median(s / b for s, b in zip(single_s, batched_s, strict=True)),
        "identical_hypotheses": len(differing) == 0,
        "differing": differing[:5],
        "differing_count": len(differing),
    }


def main() -> None:
    ap = model_bench_parser(__doc__, "results/bench/decoding.json", "one small chunk (a smoke run)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out.resolve()
    params = load_params([Path(p).resolve() for p in args.params])
    os.chdir(args.root)  # params.yaml's paths are relative to the run's folder, as in the pipeline
    experiment = parse_name(args.experiment)
    features = experiment_features(params, experiment, "test")
    needed = {
        "checkpoint": Path(checkpoint_dir(experiment)) / "model.safetensors",
        "llm": Path(params["llm"]["path"]),
        **{f"{m} test features": Path(p) for m, p in features.items()},
    }
    inputs = {k: str(Path(args.root) / v) for k, v in needed.items()}
    skipped = missing(needed)
    dec = params["decode"]
    batch_size, chunks = (2, 1) if args.quick else (dec["batch_size"], 4)
    figures: dict[str, Any] = {}
    if skipped:
        log.warning("skipping: %s", skipped)
        speedup = None
    else:
        transcripts = {
            u.uid: u.transcript for u in read_split(params["corpus"]["root"], "test", check_media=False)
        }
        dataset = FeatureDataset({m: FeatureStore(Path(p)) for m, p in features.items()}, transcripts)
        widths = {m: f.shape[1] for m, f in dataset[0][1].items()}
        model = load_checkpoint(
            Path(checkpoint_dir(experiment)), resolve_run(params, experiment), widths
        ).eval()
        figures = compare(model, dataset, chunks, batch_size, dec["beam_size"], dec["max_new_tokens"])
        speedup = figures["speedup"]
    note = (
        ""
        if speedup is None or figures["identical_hypotheses"]
        else (f"{figures['differing_count']} of {figures['utterances']} hypotheses differ")
    )
    budgets = [budget("batched decoding speed-up", speedup, 3.0, "min", "x", note)]
    write_result(
        out, "decoding", args.quick, inputs | {"experiment": args.experiment}, figures, budgets, skipped
    )


if __name__ == "__main__":
    main()
