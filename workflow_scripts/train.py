"""Train one experiment's projectors and LoRA adapters on cached features."""

import json
from pathlib import Path

from avsr_sinks import cli, experiment_inputs
from avsr_sinks.augment import FeatureAugmenter
from avsr_sinks.data.validation import read_usable
from avsr_sinks.experiment import augment_config, model_config, train_config, warm_start
from avsr_sinks.features import FeatureDataset
from avsr_sinks.grid import parse_name
from avsr_sinks.model import AVSRModel
from avsr_sinks.modeling.llm import load_llm
from avsr_sinks.pipeline import noisy_train_features
from avsr_sinks.records import train_record, warm_start_sources
from avsr_sinks.train import seed_everything, train


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--corpus-dir", type=Path, required=True)
    ap.add_argument("--utterances", type=Path, required=True, help="the corpus check's train list")
    ap.add_argument(
        "--features", type=cli.modality_path, action="append", default=[], metavar="MODALITY=PATH"
    )
    ap.add_argument(
        "--noisy-features",
        type=cli.modality_path,
        action="append",
        default=[],
        metavar="MODALITY=PATH",
        help="the noisy view of the training features that train.augment.noise reads",
    )
    ap.add_argument(
        "--warm-start",
        type=Path,
        action="append",
        default=[],
        help="the checkpoints of train.warm_start's experiments, in its order",
    )
    ap.add_argument("--lm-dir", type=Path, required=True)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--resume-dir", type=Path, help="keep resume state here (continue from it if present)")
    args = ap.parse_args()
    params = cli.start(args)
    experiment = parse_name(args.experiment)
    transcripts = {u.uid: u.transcript for u in read_usable(args.utterances, args.corpus_dir)}
    stores = experiment_inputs.feature_stores(args.features, experiment.modalities)
    dataset = FeatureDataset(stores, transcripts)
    seed_everything(experiment.seed)
    llm, tokenizer = load_llm(args.lm_dir, params["model"]["attn_implementation"], params["llm"]["hub_id"])
    widths = {m: features.shape[1] for m, features in dataset[0][1].items()}
    model = AVSRModel(model_config(params, experiment, widths), llm, tokenizer)
    print(f"{experiment.name}: {model.count_trainable():,} trainable parameters")
    sources = warm_start_sources(params, experiment)
    if len(args.warm_start) != len(sources):
        raise SystemExit(
            f"--warm-start: train.warm_start starts {experiment.name} from {[s.name for s in sources]}, "
            f"got {[str(p) for p in args.warm_start]}"
        )
    if sources:
        taken = warm_start(model, args.warm_start)
        print(f"warm start: {len(taken)} tensors from {', '.join(map(str, args.warm_start))}")
    noisy_stores = experiment_inputs.feature_stores(
        args.noisy_features, tuple(noisy_train_features(params, experiment)), "--noisy-features"
    )
    augment = FeatureAugmenter(
        augment_config(params, experiment.task),
        experiment.seed,
        {m: store.manifest["frame_rate"] for m, store in stores.items()},
        noisy_stores,
    )
    record = {
        **train_record(params, experiment),
        **{f"{m}_features": store.manifest for m, store in stores.items()},
        **{f"noisy_{m}_features": store.manifest for m, store in noisy_stores.items()},
    }
    summary = train(
        model, dataset, train_config(params, experiment), args.out_dir, record, args.resume_dir, augment
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    cli.run(main)
