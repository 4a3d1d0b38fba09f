"""The run spec: params.yaml resolved for one experiment into the settings that apply to it, typed and frozen.

:func:`resolve_run` is the one place that reads an experiment's settings out of params. It keeps only
what applies: the synthetic generator's settings only for a synthetic corpus, the video encoder's
pretraining only where the pipeline pretrains it, the bundled LLM's wheel and random initialisation only
for the bundled LLM, the encoders only of the experiment's modalities, per-task values resolved to the
task's, the decorrelation loss only for decorr, ACT's settings only for ACT. So a change to a setting
that an experiment does not use leaves its spec, and everything derived from it, as it was.

Derived from the spec: the checkpoint's record (:meth:`RunSpec.train_record`, stored in experiment.json
and compared when a checkpoint is loaded), the evaluation record (:meth:`RunSpec.eval_record`), Snakemake's
rerun-on-settings triggers (their JSON) and dvc.yaml's ``params:`` keys (:attr:`RunSpec.param_keys`, the
params.yaml keys the spec read). The stages take the sub-spec they need. This module sits below every
stage: it imports only the grid.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from avsr_sinks.settings.grid import Experiment, build_grid


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    kind: str  # synthetic | external
    root: str
    synth: Mapping[str, Any] | None  # the generator's settings: synthetic corpora only


@dataclass(frozen=True)
class AudioEncoderSpec:
    source: str  # bundled | local
    path: str
    name: str
    window_seconds: float


@dataclass(frozen=True)
class VideoEncoderSpec:
    source: str  # pretrain | fairseq | local
    path: str
    name: str
    checkpoint: str | None  # fairseq only: the AV-HuBERT checkpoint converted into path
    pretrain: Mapping[str, Any] | None  # pretrain only: how the pipeline trains the small encoder


@dataclass(frozen=True)
class LLMSpec:
    source: str  # bundled | local
    path: str
    wheel: str | None  # bundled only
    random_init: Mapping[str, Any] | None  # bundled only (tests and CI)
    hub_id: str | None  # local only: the model the folder at path holds


@dataclass(frozen=True)
class ModelSpec:
    compression: str
    projector_hidden: int
    projector_layernorm: bool
    match_embedding_norm: bool
    lora_rank: int
    lora_alpha: float
    lora_dropout: float
    lora_targets: tuple[str, ...]
    attn_implementation: str
    prompt: str  # the task's


@dataclass(frozen=True)
class TrainSpec:
    lr: float  # the task's
    betas: tuple[float, float]
    weight_decay: float
    epochs: int  # the task's
    lr_decay_share: float  # the task's: the last share of the steps, over which the rate falls (1: cosine)
    warm_start: tuple[str, ...]  # the experiments whose checkpoints initialise this one
    max_frames: int
    grad_clip: float
    checkpoint_every: int
    average_last: int
    projector_lr_multiplier: float
    lora_lr_multiplier: float
    ctc_weight: float
    ctc_head: str | None  # None without a CTC loss
    ctc_classes: str | None  # vocabulary or batch (ModelConfig.ctc_classes); None without a CTC loss
    ctc_modalities: tuple[str, ...] | None  # the task's; None without a CTC loss
    ctc_warmup_steps: int  # 0 for a warm-started run: its projectors are trained already
    autocast_bf16_on_cpu: bool | str  # true, false or auto (modeling.precision resolves it)
    autocast_bf16_on_gpu: bool
    noise_probability: float  # the task's share of noisy samples (0 without audio)
    noise: Mapping[str, Any] | None  # kind and SNRs of the noisy view: only where it is read
    time_mask_max_seconds: float  # the task's
    # decorr.branch_at: the share of the schedule the baseline and its decorr run train as one (the
    # baseline keeps its state at that step, the decorr run continues from it); None: apart (the paper)
    branch_at: float | None = None
    branch_from: str | None = None  # a branching decorr run: the baseline it continues


@dataclass(frozen=True)
class DecorrSpec:
    weight: float  # params' decorr.lambda
    layers: tuple[int, ...] | None  # None: all of 1..L-1


@dataclass(frozen=True)
class DecodeSpec:
    beam_size: int
    max_new_tokens: int
    batch_size: int
    autocast_bf16_on_cpu: bool | str  # true, false or auto (modeling.precision resolves it)


@dataclass(frozen=True)
class ActSpec:
    beta: float
    sink_threshold: float
    exempt_key: str
    search_metric: str
    search_utterances: int


@dataclass(frozen=True)
class RunSpec:
    """The settings of one experiment (for ACT: its baseline's training, plus ACT's own)."""

    experiment: Experiment
    corpus: CorpusSpec
    audio_encoder: AudioEncoderSpec | None
    video_encoder: VideoEncoderSpec | None
    llm: LLMSpec
    model: ModelSpec
    train: TrainSpec
    decorr: DecorrSpec | None
    decode: DecodeSpec
    act: ActSpec | None
    # The params.yaml keys read for training, and for decoding on top of them (dvc.yaml's params:).
    train_keys: tuple[str, ...] = field(repr=False, compare=False, default=())
    decode_keys: tuple[str, ...] = field(repr=False, compare=False, default=())

    def train_record(self) -> dict[str, Any]:
        """Everything the trained weights depend on: experiment.json's record, compared on load."""
        trained = self.experiment.trained
        sections = ("corpus", "audio_encoder", "video_encoder", "llm", "model", "train", "decorr")
        return {
            "experiment": trained.name,
            "task": trained.task,
            "audio_rate": trained.audio_rate,
            "video_rate": trained.video_rate,
            "method": trained.method,
            "seed": trained.seed,
            **{name: _json(getattr(self, name)) for name in sections if getattr(self, name) is not None},
        }

    def eval_record(self) -> dict[str, Any]:
        """What a decoding depends on: the checkpoint's record, the decoding settings and, for ACT, the
        calibration (the evaluated experiment's name, e.g. ``asr-a4-act-s0``, beside the checkpoint's)."""
        record = {**self.train_record(), "decode": _json(self.decode)}
        if self.act is not None:
            record |= {"evaluated_experiment": self.experiment.name, "act": _json(self.act)}
        return record


def _json(section: Any) -> dict[str, Any]:
    """A sub-spec as its record's JSON: tuples as lists, unset optional settings left out."""
    record = {}
    for item in fields(section):
        value = getattr(section, item.name)
        if value is not None:
            record[item.name] = json_ready(value)
    return record


def json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


class _Reader:
    """Reads dotted keys out of params and remembers which it read."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params, self.keys = params, []

    def __call__(self, key: str) -> Any:
        value: Any = self.params
        for part in key.split("."):
            value = value[part]
        self.keys.append(key)
        return value

    def section(self, name: str, keys: tuple[str, ...]) -> dict[str, Any]:
        return {key: self(f"{name}.{key}") for key in keys}


def _per_task(read: _Reader, key: str, task: str) -> Any:
    """A setting given once for every task, or per task ({asr: ..., vsr: ..., avsr: ...})."""
    value = read.params
    for part in key.split("."):
        value = value[part]
    return read(f"{key}.{task}") if isinstance(value, Mapping) else read(key)


def _corpus(read: _Reader) -> CorpusSpec:
    kind = read("corpus.kind")
    return CorpusSpec(
        name=read("corpus.name"),
        kind=kind,
        root=read("corpus.root"),
        synth=read("corpus.synth") if kind == "synthetic" else None,
    )


def _encoders(
    read: _Reader, experiment: Experiment
) -> tuple[AudioEncoderSpec | None, VideoEncoderSpec | None]:
    audio = video = None
    if "audio" in experiment.modalities:
        audio = AudioEncoderSpec(
            **read.section("audio_encoder", ("source", "path", "name", "window_seconds"))
        )
    if "video" in experiment.modalities:
        source = read("video_encoder.source")
        video = VideoEncoderSpec(
            source=source,
            path=read("video_encoder.path"),
            name=read("video_encoder.name"),
            checkpoint=read("video_encoder.checkpoint") if source == "fairseq" else None,
            pretrain=read("video_encoder.pretrain") if source == "pretrain" else None,
        )
    return audio, video


def _llm(read: _Reader) -> LLMSpec:
    source = read("llm.source")
    bundled = source == "bundled"
    return LLMSpec(
        source=source,
        path=read("llm.path"),
        wheel=read("llm.wheel") if bundled else None,
        random_init=read("llm.random_init") if bundled else None,
        hub_id=None if bundled else read("llm.hub_id"),
    )


def _model(read: _Reader, task: str) -> ModelSpec:
    keys = ("compression", "projector_hidden", "projector_layernorm", "match_embedding_norm", "lora_rank")
    return ModelSpec(
        **read.section("model", keys),
        lora_alpha=read("model.lora_alpha"),
        lora_dropout=read("model.lora_dropout"),
        lora_targets=tuple(read("model.lora_targets")),
        attn_implementation=read("model.attn_implementation"),
        prompt=read(f"model.prompts.{task}"),
    )


def branch_source(params: Mapping[str, Any], experiment: Experiment) -> Experiment | None:
    """The baseline a decorr run continues from (decorr.branch_at set): same task, rates and seed, in the
    grid; None for every other run."""
    experiment = experiment.trained
    if experiment.method != "decorr" or params["decorr"]["branch_at"] is None:
        return None
    baseline = replace(experiment, method="baseline")
    if baseline not in build_grid(params):
        raise ValueError(
            f"decorr.branch_at = {params['decorr']['branch_at']} continues {experiment.name} from "
            f"{baseline.name}, which is not in the grid: add baseline to grid.methods or set "
            "decorr.branch_at to null"
        )
    return baseline


def _has_decorr_run(params: Mapping[str, Any], experiment: Experiment) -> bool:
    """Whether ``experiment`` is a baseline whose decorr run (same task, rates, seed) is in the grid: the
    one whose state decorr.branch_at may ask it to keep."""
    return experiment.method == "baseline" and replace(experiment, method="decorr") in build_grid(params)


def warm_start_sources(params: Mapping[str, Any], experiment: Experiment) -> list[Experiment]:
    """The trained experiments whose checkpoints initialise ``experiment`` (train.warm_start): same
    method, seed and the rates of their own modalities; each must be in the grid. None for a decorr run
    that continues its baseline (which was warm-started itself)."""
    experiment = experiment.trained
    if branch_source(params, experiment) is not None:
        return []
    sources = []
    for task in params["train"]["warm_start"][experiment.task]:
        source = Experiment(
            task,
            experiment.audio_rate if task in ("asr", "avsr") else None,
            experiment.video_rate if task in ("vsr", "avsr") else None,
            experiment.method,
            experiment.seed,
        )
        if source not in build_grid(params):
            raise ValueError(
                f"train.warm_start.{experiment.task} starts {experiment.name} from {source.name}, which is "
                f"not in the grid (its rates, method and seed): add it there or remove {task} from the "
                "warm start"
            )
        sources.append(source)
    return sources


def _train(read: _Reader, experiment: Experiment) -> TrainSpec:
    if experiment.method == "decorr":
        read("decorr.branch_at")  # null or not, whether the run continues its baseline
    baseline = branch_source(read.params, experiment)
    if baseline is not None:
        # The run is its baseline's up to the branch: the same settings, which the branch is checked against.
        return replace(_train(read, baseline), branch_from=baseline.name)
    task = experiment.task
    warm = tuple(source.name for source in warm_start_sources(read.params, experiment))
    read(f"train.warm_start.{task}")
    ctc_weight = read("train.ctc_weight")
    noise_probability = 0.0 if task == "vsr" else _per_task(read, "train.augment.noise.probability", task)
    keys = ("weight_decay", "max_frames", "grad_clip", "checkpoint_every", "average_last")
    return TrainSpec(
        lr=_per_task(read, "train.lr", task),
        betas=tuple(read("train.betas")),
        epochs=_per_task(read, "train.epochs", task),
        lr_decay_share=_per_task(read, "train.lr_decay_share", task),
        warm_start=warm,
        **read.section("train", keys),
        projector_lr_multiplier=read("train.projector_lr_multiplier"),
        lora_lr_multiplier=read("train.lora_lr_multiplier"),
        ctc_weight=ctc_weight,
        ctc_head=read("train.ctc_head") if ctc_weight > 0 else None,
        ctc_classes=read("train.ctc_classes") if ctc_weight > 0 else None,
        ctc_modalities=tuple(read(f"train.ctc_modalities.{task}")) if ctc_weight > 0 else None,
        ctc_warmup_steps=0 if warm else read("train.ctc_warmup_steps"),
        autocast_bf16_on_cpu=read("train.autocast_bf16_on_cpu"),
        autocast_bf16_on_gpu=read("train.autocast_bf16_on_gpu"),
        noise_probability=noise_probability,
        noise={key: read(f"train.augment.noise.{key}") for key in ("kind", "snrs_db")}
        if noise_probability > 0
        else None,
        time_mask_max_seconds=_per_task(read, "train.augment.time_mask_max_seconds", task),
        branch_at=read("decorr.branch_at") if _has_decorr_run(read.params, experiment) else None,
    )


def resolve_run(params: Mapping[str, Any], experiment: Experiment) -> RunSpec:
    """The settings of ``experiment`` under ``params`` (validated params: config.load_params)."""
    read = _Reader(params)
    trained = experiment.trained
    corpus = _corpus(read)
    audio, video = _encoders(read, trained)
    llm, model, train = _llm(read), _model(read, trained.task), _train(read, trained)
    decorr = None
    if trained.method == "decorr":
        layers = read("decorr.layers")
        decorr = DecorrSpec(weight=read("decorr.lambda"), layers=tuple(layers) if layers else None)
    train_keys = tuple(read.keys)
    decode = DecodeSpec(
        **read.section("decode", ("beam_size", "max_new_tokens", "batch_size", "autocast_bf16_on_cpu"))
    )
    act = None
    if experiment.method == "act":
        act = ActSpec(
            **read.section(
                "act", ("beta", "sink_threshold", "exempt_key", "search_metric", "search_utterances")
            )
        )
    return RunSpec(
        experiment=experiment,
        corpus=corpus,
        audio_encoder=audio,
        video_encoder=video,
        llm=llm,
        model=model,
        train=train,
        decorr=decorr,
        decode=decode,
        act=act,
        train_keys=train_keys,
        decode_keys=tuple(key for key in read.keys if key not in train_keys),
    )


def differences(stored: Any, wanted: Any, prefix: str = "") -> list[str]:
    """The settings in which a stored record and a wanted one differ, one line each."""
    if isinstance(stored, Mapping) and isinstance(wanted, Mapping):
        keys = sorted(set(stored) | set(wanted))
        return [d for k in keys for d in differences(stored.get(k), wanted.get(k), f"{prefix}{k}.")]
    if json.dumps(stored, sort_keys=True) != json.dumps(wanted, sort_keys=True):
        return [f"{prefix.rstrip('.')}: checkpoint has {stored!r}, requested {wanted!r}"]
    return []
