"""What the paper's methods cost at the embedded scale, each measured side by side with its baseline.

- decorrelation loss: one training step (forward, backward, AdamW) with CE + lambda x decorrelation
  against CE alone, on the same batches, alternating (target: ratio at most 1.05);
- ACT: beam-search decoding with every candidate head calibrated against plain eager decoding, per
  utterance, alternating (target: ratio at most 1.3);
- the analysis of one model on 64 test utterances: the teacher-forced capture plus the metrics (target:
  under 60 s on 2 cores).

The model is the ASR rate-4 model of params.yaml on the real pretrained LM and cached Whisper features,
with freshly initialised projector and LoRA: the cost of these steps does not depend on trained weights.
Writes ``results/bench/methods.json``:

    python bench/methods_cost.py [--steps 20] [--decode-batches 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from avsr_sinks.act import calibrate_as_set, candidate_heads
from avsr_sinks.analysis import AnalysisThresholds
from avsr_sinks.capture import collect
from avsr_sinks.config import load_params
from avsr_sinks.data.manifest import read_split
from avsr_sinks.experiment import model_config
from avsr_sinks.features import FeatureDataset, FeatureStore, collate_features
from avsr_sinks.grid import parse_name
from avsr_sinks.losses import decorrelation_loss
from avsr_sinks.model import AVSRModel
from avsr_sinks.modeling.llm import load_llm
from avsr_sinks.pipeline import experiment_features


def build(params, experiment, dataset) -> AVSRModel:
    torch.manual_seed(0)
    llm, tokenizer = load_llm(params["llm"]["path"], "eager")
    widths = {m: f.shape[1] for m, f in dataset[0][1].items()}
    return AVSRModel(model_config(params, experiment, widths), llm, tokenizer)


def batches(dataset, size: int, count: int) -> list[dict]:
    return [
        collate_features([dataset[i] for i in range(start, start + size)])
        for start in range(0, size * count, size)
    ]


def train_step(model, optimizer, batch, decorr_lambda: float) -> float:
    tick = time.perf_counter()
    out, assembled = model(batch["features"], batch["transcripts"], output_hidden_states=decorr_lambda > 0)
    loss = out.loss
    if decorr_lambda > 0:
        loss = loss + decorr_lambda * decorrelation_loss(out.hidden_states, assembled.segments)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - tick


def decorrelation_cost(params, experiment, dataset, steps: int) -> dict:
    model = build(params, experiment, dataset)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    work = batches(dataset, 8, steps)
    train_step(model, optimizer, work[0], 0.0)  # warm-up: first-call allocations
    plain, decorr = [], []
    for batch in work:  # alternate, so drift in machine load hits both alike
        plain.append(train_step(model, optimizer, batch, 0.0))
        decorr.append(train_step(model, optimizer, batch, params["decorr"]["lambda"]))
    return {
        "steps": steps,
        "batch_size": 8,
        "baseline_step_s": statistics.median(plain),
        "decorr_step_s": statistics.median(decorr),
        "ratio": statistics.median(decorr) / statistics.median(plain),
        "target": 1.05,
    }


def act_cost(params, experiment, dataset, n_batches: int) -> dict:
    model = build(params, experiment, dataset).eval()
    dec = params["decode"]
    config = model.llm.get_base_model().config
    heads = candidate_heads(config.num_hidden_layers, config.num_attention_heads)
    work = batches(dataset, dec["batch_size"], n_batches)

    def decode(batch) -> float:
        tick = time.perf_counter()
        model.generate(batch["features"], beam_size=dec["beam_size"], max_new_tokens=dec["max_new_tokens"])
        return time.perf_counter() - tick

    decode(work[0])
    plain, act = [], []
    for batch in work:
        plain.append(decode(batch))
        with calibrate_as_set(model, heads, params["act"]):
            act.append(decode(batch))
    per_utt = dec["batch_size"]
    return {
        "utterances": per_utt * n_batches,
        "calibrated_heads": len(heads),
        "beam_size": dec["beam_size"],
        "plain_s_per_utterance": sum(plain) / (per_utt * n_batches),
        "act_s_per_utterance": sum(act) / (per_utt * n_batches),
        "ratio": sum(act) / sum(plain),
        "target": 1.3,
    }


def analysis_cost(params, experiment, dataset) -> dict:
    model = build(params, experiment, dataset)
    cfg = params["analysis"]
    items = [dataset[i] for i in range(cfg["utterances"])]
    tick = time.perf_counter()
    captured = collect(model, [i[1] for i in items], [i[2] for i in items])
    captured.analyze(AnalysisThresholds.from_settings(cfg))
    seconds = time.perf_counter() - tick
    return {"utterances": len(items), "seconds": seconds, "target_s": 60}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", nargs="+", default=["params.yaml"])
    ap.add_argument("--experiment", default="asr-a4-baseline-s0")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--decode-batches", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("results/bench/methods.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    experiment = parse_name(args.experiment)
    transcripts = {
        u.uid: u.transcript for u in read_split(params["corpus"]["root"], "test", check_media=False)
    }
    stores = {m: FeatureStore(Path(p)) for m, p in experiment_features(params, experiment, "test").items()}
    dataset = FeatureDataset(stores, transcripts)
    report = {
        "experiment": experiment.name,
        "threads": args.threads,
        "decorrelation": decorrelation_cost(params, experiment, dataset, args.steps),
        "act": act_cost(params, experiment, dataset, args.decode_batches),
        "analysis": analysis_cost(params, experiment, dataset),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
