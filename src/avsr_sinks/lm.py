"""The embedded default's language model: a BPE tokenizer and a small Llama pretrained on text.

It stands in for Llama 3.2 at CPU scale. The tokenizer carries Llama-style BOS/EOS plus the special
tokens Llama-AVSR adds (``<pad> <audio> </audio> <video> </video>``), so the AVSR model treats it
exactly like a paper-scale tokenizer.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tqdm import tqdm
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    get_cosine_schedule_with_warmup,
)

from avsr_sinks.io import atomic_path

log = logging.getLogger(__name__)

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
MODALITY_TOKENS = ("<audio>", "</audio>", "<video>", "</video>")
# A stretched first reading (pack_sentences): each token over 1-2 positions and 0-4 pads after it, about
# the 3-4 audio tokens per word piece that Whisper's 50 Hz frames give at compression rate 4.
STRETCH_MAX_REPEAT = 2
STRETCH_MAX_FILL = 4


@dataclass(frozen=True)
class StretchPhaseConfig:
    """A second pretraining phase on stretched first readings (``continue_stretched``; 0 steps: none)."""

    steps: int
    lr: float
    warmup_steps: int
    seq_len: int
    stretch_fraction: float
    seed: int


@dataclass(frozen=True)
class LMPretrainConfig:
    seed: int
    layers: int
    hidden: int
    heads: int
    intermediate: int
    seq_len: int
    batch_size: int
    steps: int
    lr: float
    warmup_steps: int
    copy_fraction: float  # share of sentences repeated in the packed text (0 = plain text)
    # share of the repeated sentences whose first reading is stretched (see pack_sentences; 0 = none)
    stretch_fraction: float = 0.0
    stretch_phase: StretchPhaseConfig | None = None  # the second phase (None or 0 steps: none)

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"llm.pretrain.hidden ({self.hidden}) must be divisible by heads ({self.heads})")


def train_tokenizer(sentences: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a BPE tokenizer whose first ids are the special tokens."""
    # Metaspace keeps word boundaries inside the tokens, so decode() restores the spaces exactly.
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    specials = [UNK, BOS, EOS, PAD, *MODALITY_TOKENS]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tokenizer.train_from_iterator(sentences, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=list(MODALITY_TOKENS),
    )


def pack_sentences(
    tokenizer: PreTrainedTokenizerFast,
    sentences: Sequence[str],
    seq_len: int,
    copy_fraction: float = 0.0,
    seed: int = 0,
    stretch_fraction: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate ``sentence EOS`` streams into rows of ``seq_len`` tokens, each row opening with BOS.

    With ``copy_fraction`` > 0, that share of the sentences is written twice (``sentence EOS sentence
    EOS``): a small LM trained only on independent sentences learns to ignore everything before the last
    EOS and cannot copy from its prefix, which an LLM-based recogniser must do with its audio tokens.
    With ``stretch_fraction`` > 0, that share of the repeated sentences has a stretched first reading:
    each token written 1 to ``STRETCH_MAX_REPEAT`` times and followed by 0 to ``STRETCH_MAX_FILL`` pad
    tokens, the shape of the audio tokens a CTC-trained projector gives (a word's token over a few
    frames, blank frames between); the stretched reading is context only (no loss on it).

    Returns the (rows, seq_len) token ids and their labels (-100 where no loss is taken).
    A leftover shorter than one row is dropped.
    """
    rng = np.random.default_rng(seed)
    stream: list[int] = []
    targets: list[int] = []
    for ids in tokenizer(list(sentences), add_special_tokens=False)["input_ids"]:
        body = [*ids, tokenizer.eos_token_id]
        if rng.random() < copy_fraction:
            if stretch_fraction > 0 and rng.random() < stretch_fraction:
                first = [
                    piece
                    for token in ids
                    for piece in [token] * int(rng.integers(1, STRETCH_MAX_REPEAT + 1))
                    + [tokenizer.pad_token_id] * int(rng.integers(0, STRETCH_MAX_FILL + 1))
                ]
                stream += [*first, tokenizer.eos_token_id]
                targets += [-100] * (len(first) + 1)
            else:
                stream += body
                targets += body
        stream += body
        targets += body
    width = seq_len - 1
    rows = len(stream) // width
    if rows == 0:
        raise ValueError(f"too little text to fill one sequence of {seq_len} tokens ({len(stream)} tokens)")
    bos = torch.full((rows, 1), tokenizer.bos_token_id, dtype=torch.long)
    ids = torch.tensor(stream[: rows * width], dtype=torch.long).view(rows, width)  # (rows, seq_len - 1)
    labels = torch.tensor(targets[: rows * width], dtype=torch.long).view(rows, width)
    return torch.cat([bos, ids], dim=1), torch.cat([torch.full_like(bos, -100), labels], dim=1)


def sentence_batch(tokenizer: PreTrainedTokenizerFast, sentences: Sequence[str]) -> dict[str, torch.Tensor]:
    """``BOS sentence EOS`` per row, right-padded; labels are -100 on padding."""
    ids = [
        [tokenizer.bos_token_id, *row, tokenizer.eos_token_id]
        for row in tokenizer(list(sentences), add_special_tokens=False)["input_ids"]
    ]
    width = max(map(len, ids))
    input_ids = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    labels = input_ids.masked_fill(mask == 0, -100)
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


@torch.inference_mode()
def perplexity(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    sentences: Sequence[str],
    batch_size: int = 64,
) -> float:
    """Token-level perplexity of ``BOS sentence EOS`` (BOS itself is not predicted)."""
    model.eval()
    total_nll, total_tokens = 0.0, 0
    for start in range(0, len(sentences), batch_size):
        batch = sentence_batch(tokenizer, sentences[start : start + batch_size])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        targets = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="sum"
        )
        total_nll += nll.item()
        total_tokens += int((targets != -100).sum())
    return math.exp(total_nll / max(total_tokens, 1))


@torch.inference_mode()
def copy_cross_entropy(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, sentences: Sequence[str]
) -> dict[str, float]:
    """Mean token cross-entropy of a sentence read once and of its exact repeat in ``BOS s EOS s EOS``.

    A model that can copy from its prefix predicts the repeat far better than the first reading.
    """
    model.eval()
    totals = {"first": [0.0, 0], "repeat": [0.0, 0]}
    for ids in tokenizer(list(sentences), add_special_tokens=False)["input_ids"]:
        body = [*ids, tokenizer.eos_token_id]
        seq = torch.tensor([[tokenizer.bos_token_id, *body, *body]])  # (1, 1 + 2n)
        logits = model(input_ids=seq).logits[0, :-1].float()  # (2n, V): position t predicts token t + 1
        nll = torch.nn.functional.cross_entropy(logits, seq[0, 1:], reduction="none")
        n = len(body)
        totals["first"][0] += nll[:n].sum().item()
        totals["first"][1] += n
        totals["repeat"][0] += nll[n:].sum().item()
        totals["repeat"][1] += n
    return {f"{k}_reading_ce": total / max(count, 1) for k, (total, count) in totals.items()}


def build_llama(cfg: LMPretrainConfig, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden,
        intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.heads,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        attn_implementation="eager",
    )
    return LlamaForCausalLM(config)


@dataclass(frozen=True)
class _Schedule:
    steps: int
    lr: float
    warmup_steps: int
    batch_size: int
    seed: int


def _train_steps(
    model: LlamaForCausalLM,
    data: torch.Tensor,
    labels: torch.Tensor,
    plan: _Schedule,
    log_path: Path,
    desc: str,
    on_step: Callable[[int, LlamaForCausalLM], None] | None = None,
) -> dict[str, float]:
    """Train on random batches of packed rows, writing a per-step CSV log; what the run did. ``on_step``
    sees the model after each step (e.g. to measure it along the way; it must leave it in train mode)."""
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(plan.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=plan.lr, betas=(0.9, 0.95), weight_decay=0.1)
    schedule = get_cosine_schedule_with_warmup(optimizer, plan.warmup_steps, plan.steps)
    log.info("%s: %.2fM parameters on %d packed rows", desc, model.num_parameters() / 1e6, len(data))
    with atomic_path(log_path) as tmp_log, tmp_log.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "loss", "lr", "tokens_per_s"])
        model.train()
        for step in tqdm(range(1, plan.steps + 1), desc=desc, mininterval=5):
            tick = time.perf_counter()
            rows = torch.randint(len(data), (plan.batch_size,), generator=generator)
            loss = model(input_ids=data[rows], labels=labels[rows]).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            rate = rows.numel() * data.shape[1] / (time.perf_counter() - tick)
            writer.writerow([step, f"{loss.item():.5f}", f"{schedule.get_last_lr()[0]:.3e}", f"{rate:.0f}"])
            if on_step is not None:
                on_step(step, model)
    return {"train_rows": len(data), "final_loss": loss.item(), "seconds": time.perf_counter() - start}


def _save(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    heldout_sentences: Sequence[str],
    out_dir: Path,
    summary: dict[str, float],
) -> dict[str, float]:
    """Measure held-out perplexity and copying; save model and tokenizer to ``out_dir`` atomically."""
    summary = {
        "parameters": model.num_parameters(),
        **summary,
        "heldout_perplexity": perplexity(model, tokenizer, heldout_sentences),
        **copy_cross_entropy(model, tokenizer, heldout_sentences[:100]),
    }
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return summary


def pretrain_lm(
    cfg: LMPretrainConfig,
    tokenizer: PreTrainedTokenizerFast,
    train_sentences: Sequence[str],
    heldout_sentences: Sequence[str],
    out_dir: Path,
    log_path: Path,
    on_step: Callable[[int, LlamaForCausalLM], None] | None = None,
) -> dict[str, float]:
    """Pretrain a small Llama on packed text; save model and tokenizer to ``out_dir`` atomically.

    Writes a per-step CSV log (loss, learning rate, tokens/s) to ``log_path`` and returns the summary.
    """
    torch.manual_seed(cfg.seed)
    model = build_llama(cfg, tokenizer)
    data, labels = pack_sentences(
        tokenizer, train_sentences, cfg.seq_len, cfg.copy_fraction, cfg.seed, cfg.stretch_fraction
    )
    schedule = _Schedule(cfg.steps, cfg.lr, cfg.warmup_steps, cfg.batch_size, cfg.seed)
    summary = _train_steps(model, data, labels, schedule, log_path, "pretrain LM", on_step)
    return _save(model, tokenizer, heldout_sentences, out_dir, summary)


def continue_stretched(
    cfg: LMPretrainConfig,
    model_dir: Path,
    train_sentences: Sequence[str],
    heldout_sentences: Sequence[str],
    out_dir: Path,
    log_path: Path,
    on_step: Callable[[int, LlamaForCausalLM], None] | None = None,
) -> dict[str, float]:
    """The second pretraining phase: continue the LM at ``model_dir`` on text whose repeats are read first
    in the stretched shape of audio tokens (``cfg.stretch_phase``); save it to ``out_dir`` atomically.

    Measured (README, Recipe): stretched repeats from scratch give an LM that copies poorly; after the
    copy phase, 1,000 such steps make the ASR model leave the text-only plateau within ~150 joint steps.
    """
    phase = cfg.stretch_phase
    if phase is None or phase.steps == 0:
        raise ValueError("llm.pretrain.stretch_phase.steps is 0: there is no stretch phase to run")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    model = LlamaForCausalLM.from_pretrained(model_dir, attn_implementation="eager")
    data, labels = pack_sentences(
        tokenizer, train_sentences, phase.seq_len, cfg.copy_fraction, phase.seed, phase.stretch_fraction
    )
    schedule = _Schedule(phase.steps, phase.lr, phase.warmup_steps, cfg.batch_size, phase.seed)
    summary = _train_steps(model, data, labels, schedule, log_path, "stretch phase", on_step)
    return _save(model, tokenizer, heldout_sentences, out_dir, summary)
