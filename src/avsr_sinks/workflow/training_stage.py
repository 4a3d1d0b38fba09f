"""One experiment's training stage as the pipeline runs it: the check's list of the train split with its
cached features, the LLM, the model (warm-started where train.warm_start says so, or continuing its
baseline where decorr.branch_at says so), the augmentation, and the checkpoint record."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from avsr_sinks.features.augment import FeatureAugmenter
from avsr_sinks.modeling.avsr_model import AVSRModel
from avsr_sinks.modeling.checkpoints import model_config, warm_start
from avsr_sinks.modeling.llm import load_llm
from avsr_sinks.settings.grid import parse_name
from avsr_sinks.settings.spec import branch_source, resolve_run, warm_start_sources
from avsr_sinks.training.from_spec import augment_config, train_config
from avsr_sinks.training.train import seed_everything, train
from avsr_sinks.workflow.cli import modality_path
from avsr_sinks.workflow.experiment_inputs import add_split_arguments, feature_stores, split_dataset
from avsr_sinks.workflow.paths import noisy_train_features

log = logging.getLogger(__name__)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The training script's arguments beyond --params and --threads."""
    add_split_arguments(ap)
    ap.add_argument(
        "--noisy-features",
        type=modality_path,
        action="append",
        default=[],
        metavar="MODALITY=PATH",
        help="the noisy view train.augment.noise reads",
    )
    ap.add_argument(
        "--warm-start",
        type=Path,
        action="append",
        default=[],
        help="train.warm_start's checkpoints, in order",
    )
    ap.add_argument(
        "--branch-from",
        type=Path,
        help="a decorr run under decorr.branch_at: the baseline checkpoint it continues",
    )
    ap.add_argument("--lm-dir", type=Path, required=True)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--resume-dir", type=Path, help="keep resume state here (continue from it if present)")


def train_experiment(args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
    """Train ``args.experiment`` into ``args.out_dir``; returns the training summary."""
    experiment = parse_name(args.experiment)
    spec = resolve_run(params, experiment)
    dataset = split_dataset(args, experiment)
    stores = dataset.stores
    seed_everything(experiment.seed)
    llm, tokenizer = load_llm(args.lm_dir, spec.model.attn_implementation, spec.llm.hub_id)
    widths = {m: features.shape[1] for m, features in dataset[0][1].items()}
    model = AVSRModel(model_config(spec, widths), llm, tokenizer)
    log.info("%s: %s trainable parameters", experiment.name, f"{model.count_trainable():,}")
    sources = warm_start_sources(params, experiment)
    if len(args.warm_start) != len(sources):
        raise SystemExit(
            f"--warm-start: train.warm_start starts {experiment.name} from {[s.name for s in sources]}, "
            f"got {[str(p) for p in args.warm_start]}"
        )
    baseline = branch_source(params, experiment)
    if (baseline is None) != (args.branch_from is None):
        raise SystemExit(
            f"--branch-from: decorr.branch_at continues {experiment.name} from "
            f"{baseline.name if baseline else 'no baseline'}, got {args.branch_from}"
        )
    if sources:
        taken = warm_start(model, args.warm_start)
        log.info("warm start: %d tensors from %s", len(taken), ", ".join(map(str, args.warm_start)))
    noisy_stores = feature_stores(
        args.noisy_features, tuple(noisy_train_features(params, experiment)), "--noisy-features"
    )
    augment = FeatureAugmenter(
        augment_config(spec),
        experiment.seed,
        {m: store.manifest["frame_rate"] for m, store in stores.items()},
        noisy_stores,
    )
    record = {
        **spec.train_record(),
        **{f"{m}_features": store.manifest for m, store in stores.items()},
        **{f"noisy_{m}_features": store.manifest for m, store in noisy_stores.items()},
    }
    return train(
        model, dataset, train_config(spec), args.out_dir, record, args.resume_dir, augment, args.branch_from
    )
