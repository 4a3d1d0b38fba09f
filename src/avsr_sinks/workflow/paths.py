"""Where every stage's files live, and the targets of a whole run: shared by Snakemake and dvc.yaml."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from avsr_sinks.data.noise import TEXT_ONLY, noise_condition
from avsr_sinks.settings.grid import Experiment, build_grid, parse_name
from avsr_sinks.settings.spec import resolve_run

SPLITS = ("train", "val", "test")


def corpus_root(params: Mapping[str, Any]) -> str:
    return params["corpus"]["root"]


def corpus_card(params: Mapping[str, Any], ext: str) -> str:
    return f"results/corpus/{params['corpus']['name']}.{ext}"


def media_checked_list(params: Mapping[str, Any], split: str) -> str:
    """The split's utterances whose labels and media passed the corpus check (what the encoders read)."""
    return f"data/checked/{params['corpus']['name']}/{split}.media.csv"


def media_skip_report(params: Mapping[str, Any], split: str) -> str:
    return f"data/checked/{params['corpus']['name']}/{split}.media-skipped.csv"


def usable_list(params: Mapping[str, Any], split: str) -> str:
    """The split's utterances that passed every check, the tokenizer's too (what the LLM stages read)."""
    return f"data/checked/{params['corpus']['name']}/{split}.csv"


def skip_report(params: Mapping[str, Any], split: str) -> str:
    """Every sample of the split the checks refused, with its file, line and reason (skip mode)."""
    return f"results/corpus/{params['corpus']['name']}/{split}.skipped.csv"


def check_card(params: Mapping[str, Any], split: str) -> str:
    """The split's counts: rows, usable utterances and hours, samples skipped."""
    return f"results/corpus/{params['corpus']['name']}/{split}.check.json"


def corpus_intelligibility(params: Mapping[str, Any]) -> str:
    """Zero-shot Whisper CER/WER on the synthetic test split."""
    return f"results/corpus/{params['corpus']['name']}.whisper.json"


def audio_encoder_id(params: Mapping[str, Any]) -> str:
    """Names the audio feature cache: encoder and window, since both change the features."""
    enc = params["audio_encoder"]
    return f"{enc['name']}-w{enc['window_seconds']:g}"


def video_encoder_id(params: Mapping[str, Any]) -> str:
    return params["video_encoder"]["name"]


MODALITIES = ("audio", "video")


def feature_condition(modality: str, condition: str) -> str:
    """Noise conditions change the audio only; every other cache is the clean one."""
    return condition if modality == "audio" and condition not in ("clean", TEXT_ONLY) else "clean"


def feature_dir(params: Mapping[str, Any], modality: str, split: str, condition: str) -> str:
    encoder = audio_encoder_id(params) if modality == "audio" else video_encoder_id(params)
    condition = feature_condition(modality, condition)
    return f"data/features/{params['corpus']['name']}/{encoder}/{split}-{condition}"


def experiment_features(
    params: Mapping[str, Any], experiment: Experiment | str, split: str, condition: str = "clean"
) -> dict[str, str]:
    """The feature caches one experiment reads, by modality."""
    experiment = parse_name(experiment) if isinstance(experiment, str) else experiment
    return {m: feature_dir(params, m, split, condition) for m in experiment.modalities}


def train_noise_condition(params: Mapping[str, Any]) -> str | None:
    """The condition of the noisy training-audio cache that train-time augmentation reads (None: none)."""
    noise = params["train"]["augment"]["noise"]
    used = any(resolve_run(params, e).train.noise_probability > 0 for e in build_grid(params))
    return noise_condition(noise["kind"], noise["snrs_db"]) if used else None


def noisy_train_features(params: Mapping[str, Any], experiment: Experiment | str) -> dict[str, str]:
    """The noisy view of the training features an experiment reads, by modality (audio only, or none)."""
    experiment = parse_name(experiment) if isinstance(experiment, str) else experiment
    condition = train_noise_condition(params)
    if condition is None or resolve_run(params, experiment).train.noise_probability == 0:
        return {}
    return {"audio": feature_dir(params, "audio", "train", condition)}


def feature_sets(params: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Every (modality, split, condition) cache the grid needs, in a stable order."""
    train_conditions = ["clean", *filter(None, [train_noise_condition(params)])]
    needed = {
        (m, split, feature_condition(m, condition))
        for e in build_grid(params)
        for split, conditions in (
            ("train", train_conditions),
            ("test", eval_conditions(params, e)),
            ("val", ["clean"] if e.method == "act" else []),  # ACT's head search
        )
        for condition in conditions
        for m in e.modalities
    }
    return sorted(needed, key=lambda s: (MODALITIES.index(s[0]), s[1], s[2]))


def trained_experiments(params: Mapping[str, Any]) -> list[Experiment]:
    """The experiments that train a checkpoint (ACT decodes the baseline's)."""
    return sorted({e.trained for e in build_grid(params)})


def checkpoint_dir(experiment: Experiment | str) -> str:
    """The checkpoint an experiment decodes (a name is taken as it is, for rule patterns)."""
    name = experiment if isinstance(experiment, str) else experiment.trained.name
    return f"results/checkpoints/{name}"


def act_heads_json(experiment: Experiment | str) -> str:
    name = experiment if isinstance(experiment, str) else experiment.name
    return f"results/act/{name}/heads.json"


def analysis_files(experiment: Experiment | str) -> tuple[str, str]:
    """metrics.json and the arrays behind the figures (npz) of one experiment's analysis."""
    name = experiment if isinstance(experiment, str) else experiment.name
    return f"results/analysis/{name}/metrics.json", f"results/analysis/{name}/arrays.npz"


def resume_dir(experiment: Experiment | str) -> str:
    """Where an unfinished training run keeps its state; not an output (it outlives a killed job)."""
    name = experiment if isinstance(experiment, str) else experiment.name
    return f"results/resume/{name}"


def eval_json(experiment: Experiment | str, condition: str) -> str:
    name = experiment if isinstance(experiment, str) else experiment.name
    return f"results/eval/{name}/{condition}.json"


def eval_csv(experiment: Experiment | str, condition: str) -> str:
    return eval_json(experiment, condition).removesuffix(".json") + ".hyp.csv"


VIDEO_PRETRAIN_SUMMARY = "results/video_encoder/pretrain.json"
VIDEO_PRETRAIN_LOG = "results/video_encoder/pretrain_log.csv"
WER_TABLES = ("results/tables/wer.csv", "results/tables/wer.md")
SINK_TABLES = ("results/tables/sinks.csv", "results/tables/sinks.md")
CLAIMS_TABLES = ("results/tables/claims.csv", "results/tables/claims.md")
MAIN_TABLES = ("results/tables/main.csv", "results/tables/main.md", "results/tables/main.tex")
ROBUSTNESS_TABLES = ("results/tables/robustness.csv", "results/tables/robustness.md")
PAPER_TABLES = ("results/tables/paper_vs_reproduced.csv", "results/tables/paper_vs_reproduced.md")
PAPER_RESULTS = "references/paper_results.yaml"  # the paper's published numbers, each with its source
# Every table above on one HTML page: the report shows HTML, and offers CSV only as a download.
TABLES_PAGE = "results/tables/index.html"
FIGURES_DIR = "results/figures"
FIGURES_INDEX = f"{FIGURES_DIR}/index.json"  # lists every figure drawn, inside the figures rule's folder


def eval_conditions(params: Mapping[str, Any], experiment: Experiment) -> list[str]:
    """The test conditions an experiment is decoded under: noise only where it hears audio (on video
    alone a noisy test set is the clean one), the text-only floor only for the methods in
    ``evaluate.text_only_methods``."""
    evaluate = params["evaluate"]

    def applies(condition: str) -> bool:
        if condition == TEXT_ONLY:
            return experiment.method in evaluate["text_only_methods"]
        return condition == "clean" or "audio" in experiment.modalities

    return [c for c in evaluate["conditions"] if applies(c)]


def eval_targets(params: Mapping[str, Any]) -> list[str]:
    return [eval_json(e, c) for e in build_grid(params) for c in eval_conditions(params, e)]


def results_tables() -> list[str]:
    """The CSV of every results table (the tables page shows them all)."""
    groups = (MAIN_TABLES, ROBUSTNESS_TABLES, PAPER_TABLES, CLAIMS_TABLES, SINK_TABLES, WER_TABLES)
    return [group[0] for group in groups]


def final_targets(params: Mapping[str, Any]) -> list[str]:
    """Everything a full run produces at the top of the DAG (Snakemake's rule all)."""
    targets = [*WER_TABLES, *MAIN_TABLES, *ROBUSTNESS_TABLES, *PAPER_TABLES, *SINK_TABLES, *CLAIMS_TABLES]
    targets += [TABLES_PAGE, FIGURES_DIR]
    targets += [path for split in SPLITS for path in (skip_report(params, split), check_card(params, split))]
    if params["corpus"]["kind"] == "synthetic":
        targets += [corpus_card(params, "md"), corpus_card(params, "json"), corpus_intelligibility(params)]
    if params["video_encoder"]["source"] == "pretrain" and any(
        "video" in e.modalities for e in build_grid(params)
    ):
        targets.append(VIDEO_PRETRAIN_SUMMARY)
    return targets
