"""A tiny, deterministic training run in its own process, for the kill-and-resume tests.

Usage: python -m tests.train_job DATA_DIR LM_DIR OUT_DIR RESUME_DIR [--die-after-save N [--mid-write]]
With --die-after-save the process SIGKILLs itself right after its N-th resume save (or, with
--mid-write, inside it, before the save is renamed into place).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path

import torch

from avsr_sinks import io
from avsr_sinks.features.store import FeatureDataset, FeatureStore, extract_features
from avsr_sinks.modeling.avsr_model import AVSRModel, ModelConfig
from avsr_sinks.modeling.llm import load_llm
from avsr_sinks.training import train, training_state

SENTENCES = ["the cat sat on the mat", "a dog runs in the park", "we will go home soon", "she reads a book"]
CONFIG = train.TrainConfig(
    seed=3,
    lr=1e-3,
    betas=(0.9, 0.98),
    weight_decay=0.1,
    epochs=3,
    lr_decay_share=1.0,
    max_frames=60,
    grad_clip=10.0,
    checkpoint_every=4,
    projector_lr_multiplier=5.0,
    lora_lr_multiplier=2.0,
    ctc_weight=0.5,
    ctc_warmup_steps=5,  # the first resume save (step 4) falls inside the warm-up
    average_last=3,
)


def toy_model_config(ctc_head: str | None) -> ModelConfig:
    """The model these jobs train: audio rate 4 on width-12 frames, a tiny projector and LoRA on q, v."""
    return ModelConfig(
        ("audio",),
        {"audio": 4},
        {"audio": 12},
        "avgpool",
        16,
        True,
        4,
        2,
        0.0,
        ("q_proj", "v_proj"),
        "transcribe",
        ctc_head=ctc_head,
    )


def make_features(folder: Path) -> dict[str, str]:
    """24 utterances of random 'encoder' frames (width 12, 50 frames/s) and their transcripts."""
    uids = [f"toy/u{i:02d}" for i in range(24)]
    if not folder.exists():
        gen = torch.Generator().manual_seed(0)
        frames = {uid: torch.randn(20 + 7 * (i % 5), 12, generator=gen) for i, uid in enumerate(uids)}
        extract_features(
            uids,
            lambda uid: frames[uid],
            lambda xs: list(xs),
            folder,
            {"encoder": {"name": "toy"}, "frame_rate": 50},
            batch_size=8,
        )
    return {uid: SENTENCES[i % len(SENTENCES)] for i, uid in enumerate(uids)}


def main() -> None:
    ap = argparse.ArgumentParser()
    for name in ("data", "lm", "out", "resume"):
        ap.add_argument(name, type=Path)
    ap.add_argument("--die-after-save", type=int)
    ap.add_argument("--mid-write", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    transcripts = make_features(args.data)
    dataset = FeatureDataset({"audio": FeatureStore(args.data)}, transcripts)
    train.seed_everything(CONFIG.seed)
    llm, tokenizer = load_llm(args.lm)
    model = AVSRModel(toy_model_config("tied_embeddings"), llm, tokenizer)
    if args.die_after_save:
        saves = {"n": 0}
        real_save, real_replace = training_state.save_resume, io.os.replace

        def dying_replace(src, dst):
            if saves["n"] == args.die_after_save:
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst)

        def counting_save(*a, **k):
            saves["n"] += 1
            real_save(*a, **k)
            if saves["n"] == args.die_after_save:
                os.kill(os.getpid(), signal.SIGKILL)

        training_state.save_resume = counting_save
        if args.mid_write:
            io.os.replace = dying_replace
    train.train(model, dataset, CONFIG, args.out, {"experiment": "toy", "seed": CONFIG.seed}, args.resume)


if __name__ == "__main__":
    main()
