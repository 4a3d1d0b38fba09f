"""AVSRModel: Llama-AVSR's compression, projectors, input layout and LoRA LLM.

LLM input per utterance (PAPER.md section 2): ``[BOS] <audio> A1..An </audio> <video> V1..Vm </video>
prompt transcript [EOS]``, a modality's block absent when the task does not use it. Labels are -100 on
the prefix; the loss is causal-LM cross-entropy on transcript + EOS.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import GenerationConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from avsr_sinks.modeling.layers import Compressor, Projector, TiedCTCHead
from avsr_sinks.modeling.llm import SPECIAL_TOKENS
from avsr_sinks.modeling.segments import Segment

log = logging.getLogger(__name__)

CTC_HEADS = (None, "linear", "tied_embeddings")
CTC_CLASSES = ("vocabulary", "batch")


@dataclass(frozen=True)
class ModelConfig:
    modalities: tuple[str, ...]  # ("audio",), ("video",) or ("audio", "video"), in input order
    rates: Mapping[str, int]  # compression rate per modality
    input_dims: Mapping[str, int]  # encoder output width per modality
    compression: str  # "avgpool" (the paper) or "stack" (older Llama-AVSR)
    projector_hidden: int
    projector_layernorm: bool
    lora_rank: int
    lora_alpha: float
    lora_dropout: float
    lora_targets: tuple[str, ...]
    prompt: str
    # An auxiliary CTC head over the LLM vocabulary on the projected modality tokens (embedded-scale
    # training aid; the paper has none): None (no head, no extra parameters), "linear" (a head of its own)
    # or "tied_embeddings" (scores against the frozen LLM input embeddings, see TiedCTCHead).
    ctc_head: str | None = None
    # The modalities whose tokens the CTC loss reads (None: every modality of the model).
    ctc_modalities: tuple[str, ...] | None = None
    # What the CTC loss tells each token apart from: "vocabulary" (every word piece of the LLM) or "batch"
    # (the word pieces of the batch's transcripts and the blank: in-batch negatives, about a hundred rows
    # instead of SmolLM2's 49,152, whose scoring otherwise doubles a CPU training step).
    ctc_classes: str = "vocabulary"
    # Rescale every projected token to the root-mean-square norm of the frozen LLM's input embeddings
    # (embedded-scale training aid; the paper feeds the projector output as it is).
    match_embedding_norm: bool = False

    def __post_init__(self) -> None:
        if self.compression not in ("avgpool", "stack"):
            raise ValueError(f"model.compression must be avgpool or stack, got {self.compression!r}")
        for modality in self.modalities:
            if modality not in ("audio", "video"):
                raise ValueError(f"unknown modality {modality!r}; expected audio or video")
            if modality not in self.rates or modality not in self.input_dims:
                raise ValueError(f"modality {modality!r} needs a compression rate and an input width")
        if self.ctc_head not in CTC_HEADS:
            raise ValueError(f"ctc head must be one of {CTC_HEADS}, got {self.ctc_head!r}")
        if self.ctc_classes not in CTC_CLASSES:
            raise ValueError(f"ctc classes must be one of {CTC_CLASSES}, got {self.ctc_classes!r}")
        if self.ctc_modalities is not None and (
            not self.ctc_modalities or not set(self.ctc_modalities) <= set(self.modalities)
        ):
            raise ValueError(
                f"CTC modalities {list(self.ctc_modalities)} must be some of the model's modalities "
                f"{list(self.modalities)}"
            )

    @property
    def ctc_inputs(self) -> tuple[str, ...]:
        return self.modalities if self.ctc_modalities is None else self.ctc_modalities


def _first(names: Sequence[str], n: int = 5) -> str:
    """A readable sample of a possibly long list of tensor names."""
    return f"{list(names[:n])}{' and more' if len(names) > n else ''}"


@dataclass
class AssembledBatch:
    inputs_embeds: torch.Tensor  # (B, L, H)
    attention_mask: torch.Tensor  # (B, L), 1 on real tokens
    labels: torch.Tensor | None  # (B, L), -100 outside transcript + EOS
    segments: torch.Tensor  # (B, L), Segment values


class AVSRModel(nn.Module):
    def __init__(self, cfg: ModelConfig, llm: PreTrainedModel, tokenizer) -> None:
        super().__init__()
        self.cfg, self.tokenizer = cfg, tokenizer
        hidden = llm.config.hidden_size
        self.compressors = nn.ModuleDict(
            {m: Compressor(cfg.compression, cfg.rates[m]) for m in cfg.modalities}
        )
        self.projectors = nn.ModuleDict(
            {
                m: Projector(
                    self.compressors[m].output_width(cfg.input_dims[m]),
                    cfg.projector_hidden,
                    hidden,
                    cfg.projector_layernorm,
                )
                for m in cfg.modalities
            }
        )
        for param in llm.parameters():
            param.requires_grad_(False)
        lora = LoraConfig(
            r=cfg.lora_rank,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.lora_targets),
            bias="none",
        )
        self.llm: PeftModel = get_peft_model(llm, lora)
        self.ctc_head: nn.Module | None = None
        if cfg.ctc_head == "linear":
            self.ctc_head = nn.Linear(hidden, len(tokenizer))
        elif cfg.ctc_head == "tied_embeddings":
            self.ctc_head = TiedCTCHead(hidden)
        # Left to itself the projector (its LayerNorm gain) settles on tokens about 13x the norm of the
        # small LM's word embeddings, a scale the frozen layers never saw in text (README, The recipe at
        # the embedded scale, for what matching it does).
        embeddings = llm.get_input_embeddings().weight.detach()
        self.register_buffer(
            "token_norm", embeddings.float().norm(dim=1).pow(2).mean().sqrt(), persistent=False
        )
        self._prompt_ids = tokenizer(cfg.prompt, add_special_tokens=False)["input_ids"]
        self._delimiters = {
            m: tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS[m])) for m in cfg.modalities
        }

    # ----- parameters -------------------------------------------------------------------------------
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().cpu().contiguous() for name, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        expected = {name for name, p in self.named_parameters() if p.requires_grad}
        missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        if missing or unexpected:
            raise ValueError(
                f"checkpoint does not fit this model: missing {_first(missing)}, "
                f"unexpected {_first(unexpected)}"
            )
        params = dict(self.named_parameters())
        with torch.no_grad():
            for name, tensor in tensors.items():
                if params[name].shape != tensor.shape:
                    raise ValueError(
                        f"checkpoint tensor {name}: shape {tuple(tensor.shape)}, "
                        f"model expects {tuple(params[name].shape)}"
                    )
                params[name].copy_(tensor)

    def count_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # ----- input assembly ---------------------------------------------------------------------------
    def _embed_ids(self, ids: Sequence[int]) -> torch.Tensor:
        table = self.llm.get_input_embeddings()
        return table(torch.tensor(ids, dtype=torch.long, device=table.weight.device))  # (n, H)

    def _modality_tokens(self, modality: str, frames: torch.Tensor) -> torch.Tensor:
        """(T, D) encoder frames -> (n, H) LLM input tokens, on the LLM's device."""
        # Frames can come from elsewhere than the batch the loader placed (a noisy view read from its
        # cache by the augmentation, on the CPU).
        frames = frames.to(self.llm.get_input_embeddings().weight.device)
        tokens = self.projectors[modality](self.compressors[modality](frames))
        if self.cfg.match_embedding_norm:
            tokens = nn.functional.normalize(tokens, dim=-1) * self.token_norm.to(tokens.dtype)
        return tokens

    def _prefix(self, features: Mapping[str, torch.Tensor]) -> tuple[list[torch.Tensor], list[int]]:
        pieces = [self._embed_ids([self.tokenizer.bos_token_id])]
        segments = [Segment.BOS]
        # A modality absent from ``features`` loses its whole block (the text-only floor drops them all).
        for modality in (m for m in self.cfg.modalities if m in features):
            opening, closing = self._delimiters[modality]
            tokens = self._modality_tokens(modality, features[modality])
            pieces += [self._embed_ids([opening]), tokens, self._embed_ids([closing])]
            kind = Segment.AUDIO if modality == "audio" else Segment.VIDEO
            segments += [Segment.DELIMITER, *[kind] * tokens.shape[0], Segment.DELIMITER]
        pieces.append(self._embed_ids(self._prompt_ids))
        segments += [Segment.PROMPT] * len(self._prompt_ids)
        return pieces, segments

    def assemble(
        self,
        features: Sequence[Mapping[str, torch.Tensor]],
        transcripts: Sequence[str] | None = None,
        padding_side: str = "right",
    ) -> AssembledBatch:
        """Build the LLM input for a batch.

        ``features[b][modality]`` is that sample's (T, D) encoder output, unpadded. With transcripts the
        targets ``transcript EOS`` follow the prefix (training, right padding); without them only the
        prefix is built (generation, left padding).
        """
        rows, row_segments, row_labels = [], [], []
        targets = (
            self.tokenizer(list(transcripts), add_special_tokens=False)["input_ids"]
            if transcripts is not None
            else [None] * len(features)
        )
        for sample, target in zip(features, targets, strict=True):
            pieces, segments = self._prefix(sample)
            labels = [-100] * len(segments)
            if target is not None:
                ids = [*target, self.tokenizer.eos_token_id]
                pieces.append(self._embed_ids(ids))
                segments += [Segment.RESPONSE] * len(ids)
                labels += ids
            rows.append(torch.cat(pieces))  # (L_b, H)
            row_segments.append(segments)
            row_labels.append(labels)
        width, hidden = max(r.shape[0] for r in rows), rows[0].shape[1]
        device = rows[0].device
        embeds = rows[0].new_zeros((len(rows), width, hidden))
        mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
        segs = torch.full((len(rows), width), Segment.PAD, dtype=torch.long, device=device)
        labels = torch.full((len(rows), width), -100, dtype=torch.long, device=device)
        for b, row in enumerate(rows):
            n = row.shape[0]
            span = slice(0, n) if padding_side == "right" else slice(width - n, width)
            embeds[b, span] = row
            mask[b, span] = 1
            segs[b, span] = torch.tensor(row_segments[b], device=device)
            labels[b, span] = torch.tensor(row_labels[b], device=device)
        return AssembledBatch(embeds, mask, labels if transcripts is not None else None, segs)

    # ----- training and decoding --------------------------------------------------------------------
    def forward(
        self,
        features: Sequence[Mapping[str, torch.Tensor]],
        transcripts: Sequence[str],
        output_hidden_states: bool = False,
        run_llm: bool = True,
    ):
        """Teacher-forced LLM pass; with a CTC head, ``out["ctc_loss"]`` holds the auxiliary loss too.

        ``out.loss`` is the mean cross-entropy over the label tokens (transcript + EOS), as transformers
        computes it with shifted labels, and ``out.hidden_states`` the LLM's hidden states when asked. The
        LM head runs only at the positions that predict a label (a vocabulary-wide projection of the
        prefix is most of a small LLM's step otherwise), so ``out.logits`` is None.

        ``run_llm=False`` computes the CTC loss alone (the warm-up stage) and returns ``({"ctc_loss": ...},
        None)``; it goes through ``forward`` so that a DDP-wrapped model syncs its gradients.
        """
        if not run_llm:
            if self.ctc_head is None:
                raise ValueError("run_llm=False computes only the CTC loss, and this model has no CTC head")
            tokens = {m: [self._modality_tokens(m, f[m]) for f in features] for m in self.cfg.ctc_inputs}
            return {"ctc_loss": self._ctc_loss(tokens, self._target_ids(transcripts))}, None
        batch = self.assemble(features, transcripts)
        base = self.llm.get_base_model()  # the causal LM, its LoRA layers in place
        decoded = base.get_decoder()(
            inputs_embeds=batch.inputs_embeds,
            attention_mask=batch.attention_mask,
            output_hidden_states=output_hidden_states,
            use_cache=False,
        )
        out = CausalLMOutputWithPast(
            loss=self.label_cross_entropy(decoded.last_hidden_state, batch.labels),
            hidden_states=decoded.hidden_states,
        )
        if self.ctc_head is not None:
            tokens = {
                modality: [batch.inputs_embeds[b][batch.segments[b] == kind] for b in range(len(transcripts))]
                for modality, kind in (("audio", Segment.AUDIO), ("video", Segment.VIDEO))
                if modality in self.cfg.ctc_inputs
            }
            out["ctc_loss"] = self._ctc_loss(tokens, self._target_ids(transcripts))
        return out, batch

    def label_cross_entropy(
        self, last_hidden_state: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        """Cross-entropy of the label tokens from the decoder's final (normed) hidden states, the LM head
        run only at the positions that predict a label."""
        # Position t predicts token t + 1: keep the positions whose next token is a label.
        targets = labels[:, 1:]  # (B, L - 1)
        keep = targets != -100  # (B, L - 1)
        head = self.llm.get_base_model().get_output_embeddings()
        logits = head(last_hidden_state[:, :-1][keep])  # (N, V)
        return nn.functional.cross_entropy(logits.float(), targets[keep], reduction=reduction)

    def _target_ids(self, transcripts: Sequence[str]) -> list[torch.Tensor]:
        ids = self.tokenizer(list(transcripts), add_special_tokens=False)["input_ids"]
        return [torch.tensor(t, dtype=torch.long) for t in ids]

    def _ctc_loss(
        self, tokens: Mapping[str, Sequence[torch.Tensor]], targets: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """CTC of each modality's projected tokens (``tokens[m][b]``: (T_b, H)) against the transcript
        (blank = pad id), averaged over modalities. A sample with fewer tokens than targets contributes
        zero (``zero_infinity``). With ``ctc_classes: batch`` the classes are the batch's word pieces and
        the blank, and the targets are renumbered into them."""
        assert self.ctc_head is not None
        blank = self.tokenizer.pad_token_id
        target_ids = torch.cat(targets)
        embeddings = self.llm.get_input_embeddings().weight  # (V, H), frozen
        classes = None
        if self.cfg.ctc_classes == "batch":
            classes = torch.unique(torch.cat([target_ids, torch.tensor([blank])]))  # sorted
            target_ids = torch.searchsorted(classes, target_ids)
            blank = int(torch.searchsorted(classes, torch.tensor(blank)))

        def logits(rows: torch.Tensor) -> torch.Tensor:
            if isinstance(self.ctc_head, TiedCTCHead):
                table = embeddings if classes is None else embeddings[classes.to(embeddings.device)]
                return self.ctc_head(rows, table, blank)
            scores = self.ctc_head(rows)
            return scores if classes is None else scores[:, classes.to(scores.device)]

        losses = []
        for rows in tokens.values():
            log_probs = nn.utils.rnn.pad_sequence(
                [logits(r).float().log_softmax(-1) for r in rows]
            )  # (T, B, C)
            losses.append(
                nn.functional.ctc_loss(
                    log_probs,
                    target_ids.to(log_probs.device),
                    torch.tensor([r.shape[0] for r in rows]),
                    torch.tensor([t.shape[0] for t in targets]),
                    blank=blank,
                    zero_infinity=True,
                )
            )
        return torch.stack(losses).mean()

    @torch.inference_mode()
    def ctc_greedy(self, features: Sequence[Mapping[str, torch.Tensor]], modality: str) -> list[str]:
        """What the CTC head reads from one modality's projected tokens (best path: repeats merged, blanks
        dropped): how much of the transcript the tokens carry before the LLM reads them."""
        if self.ctc_head is None:
            raise ValueError("this model has no CTC head to read its tokens with")
        embeddings = self.llm.get_input_embeddings().weight
        texts = []
        for sample in features:
            tokens = self._modality_tokens(modality, sample[modality])
            logits = (
                self.ctc_head(tokens, embeddings, self.tokenizer.pad_token_id)
                if isinstance(self.ctc_head, TiedCTCHead)
                else self.ctc_head(tokens)
            )
            best = torch.unique_consecutive(logits.argmax(-1))
            ids = best[best != self.tokenizer.pad_token_id].tolist()
            texts.append(self.tokenizer.decode(ids, skip_special_tokens=True).strip())
        return texts

    @torch.inference_mode()
    def generate(
        self, features: Sequence[Mapping[str, torch.Tensor]], beam_size: int, max_new_tokens: int
    ) -> list[str]:
        """Deterministic beam search (no sampling, whatever the LLM's own generation config says)."""
        batch = self.assemble(features, padding_side="left")
        config = GenerationConfig(
            num_beams=beam_size,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            early_stopping=True,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            bos_token_id=self.tokenizer.bos_token_id,
        )
        out = self.llm.generate(
            inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, generation_config=config
        )
        return [text.strip() for text in self.tokenizer.batch_decode(out, skip_special_tokens=True)]
