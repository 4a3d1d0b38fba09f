"""dvc.yaml's stages of the experiments: training per task and method, ACT's head search, decoding and
analysis (avsr_sinks.workflow.dvc_yaml assembles them with the data and report stages)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from avsr_sinks.settings.grid import Experiment, build_grid
from avsr_sinks.settings.spec import branch_source, resolve_run, warm_start_sources
from avsr_sinks.workflow import paths
from avsr_sinks.workflow.dvc_stage import LIB, MODEL_CODE, PY, feature_flags, stage

ENCODER_PARAMS = {"audio": "audio_encoder", "video": "video_encoder"}


def spec_keys(params: Mapping[str, Any], experiments: list[Experiment], decoding: bool) -> list[str]:
    """The params.yaml keys the stage's run specs read (training only, or decoding too), in order."""
    keys: dict[str, None] = {}
    for experiment in experiments:
        spec = resolve_run(params, experiment)
        keys.update(dict.fromkeys(spec.train_keys + (spec.decode_keys if decoding else ())))
    return list(keys)


def experiment_stages(params: Mapping[str, Any]) -> dict[str, Any]:
    """Per task: one training stage per method, then that method's decoding stages."""
    stages: dict[str, Any] = {}
    corpus = paths.corpus_root(params)
    corpus_deps = [corpus]
    llm = params["llm"]
    experiments = build_grid(params)
    for task in dict.fromkeys(e.task for e in experiments):
        modalities = next(e.modalities for e in experiments if e.task == task)
        train_features = {m: paths.feature_dir(params, m, "train", "clean") for m in modalities}
        # As the train rule: only a task whose augmentation mixes in noise reads the noisy view.
        noisy_features = paths.noisy_train_features(params, next(e for e in experiments if e.task == task))
        noisy_flags = " " + feature_flags(noisy_features, "--noisy-features") if noisy_features else ""
        # One training stage per method, so that a decorr.* change reruns only the decorr runs.
        for method in dict.fromkeys(e.method for e in paths.trained_experiments(params) if e.task == task):
            trained = [e for e in paths.trained_experiments(params) if e.task == task and e.method == method]
            # A warm start or a branch reads other experiments' checkpoints, whose names a matrix cannot
            # derive: those stages iterate over a dict that names them per experiment (foreach), the others
            # over a matrix. Every run of a task and method reads the same kinds of checkpoint.
            sources = {e.name: _started_from(params, e) for e in trained}
            kinds = next(iter(sources.values()))
            if kinds:
                loop: dict[str, Any] = {"foreach": sources}
                name = "${key}"
                started_from = {kind: f"${{item.{kind}}}" for kind in kinds}
            else:
                loop, name, started_from = (
                    {"matrix": {"experiment": [e.name for e in trained]}},
                    "${item.experiment}",
                    {},
                )
            flags = {kind: "--branch-from" if kind == "branch" else "--warm-start" for kind in kinds}
            training = stage(
                f"{PY}/train.py --params params.yaml --experiment {name} --corpus-dir {corpus}"
                f" --utterances {paths.usable_list(params, 'train')}"
                f" {feature_flags(train_features)}{noisy_flags}"
                + "".join(f" {flags[kind]} {path}" for kind, path in started_from.items())
                + f" --lm-dir {llm['path']}"
                f" --out-dir {paths.checkpoint_dir(name)}"
                f" --resume-dir {paths.resume_dir(name)}",
                deps=[
                    *corpus_deps,
                    paths.usable_list(params, "train"),
                    *train_features.values(),
                    *noisy_features.values(),
                    *started_from.values(),
                    llm["path"],
                    "workflow_scripts/train.py",
                    f"{LIB}/workflow/training_stage.py",
                    f"{LIB}/training/train.py",
                    f"{LIB}/training/from_spec.py",
                    f"{LIB}/training/training_state.py",
                    f"{LIB}/training/nonfinite.py",
                    f"{LIB}/features/augment.py",
                    f"{LIB}/training/losses.py",
                    *MODEL_CODE,
                ],
                params=spec_keys(params, trained, decoding=False),
                outs=[paths.checkpoint_dir(name)],
            )
            stages[f"train_{task}_{method}"] = {**loop, "do": training} if kinds else {**loop, **training}
        # One set of decoding stages per method: ACT decodes its baseline's checkpoint, and a DVC matrix can
        # only substitute, so experiment and checkpoint names are built from the setting and seed.
        for method in dict.fromkeys(e.method for e in experiments if e.task == task):
            chosen = [e for e in experiments if e.task == task and e.method == method]
            stages.update(_decoding_stages(params, chosen, modalities, corpus_deps, llm["path"]))
    return stages


def _started_from(params: Mapping[str, Any], experiment: Experiment) -> dict[str, str]:
    """The checkpoints a training starts from: per warm-start task, or its baseline under "branch"."""
    baseline = branch_source(params, experiment)
    if baseline is not None:
        return {"branch": paths.checkpoint_dir(baseline)}
    return {source.task: paths.checkpoint_dir(source) for source in warm_start_sources(params, experiment)}


# What a stage that decodes from a checkpoint imports, beside its own script.
_DECODING_CODE = [
    f"{LIB}/workflow/checkpoint_stages.py",
    f"{LIB}/decoding/decode.py",
    f"{LIB}/decoding/method.py",
    *MODEL_CODE,
]


@dataclass(frozen=True)
class _DecodingRuns:
    """What the decoding stages of one task and method share. A DVC matrix can only substitute, so the
    experiment and checkpoint names are built from the matrix's setting and seed."""

    params: Mapping[str, Any]
    modalities: tuple[str, ...]
    corpus_deps: list[str]
    llm_path: str
    matrix: dict[str, list[Any]]  # setting and seed
    name: str
    ckpt: str  # ACT decodes its baseline's checkpoint
    param_keys: list[str]  # the params.yaml keys the decoding run specs read

    @property
    def corpus(self) -> str:
        return self.corpus_deps[0]

    def features(self, split: str, condition: str) -> dict[str, str]:
        return {m: paths.feature_dir(self.params, m, split, condition) for m in self.modalities}


def _decoding_stages(
    params: Mapping[str, Any],
    experiments: list[Experiment],
    modalities: tuple[str, ...],
    corpus_deps: list[str],
    llm_path: str,
) -> dict[str, Any]:
    """The evaluate and analyze stages (and ACT's head search) of one task and method."""
    first = experiments[0]
    task, method = first.task, first.method
    setting = "${item.setting}"
    runs = _DecodingRuns(
        params,
        modalities,
        corpus_deps,
        llm_path,
        matrix={
            "setting": list(dict.fromkeys(f"{e.task}-{e.rates}" for e in experiments)),
            "seed": list(dict.fromkeys(e.seed for e in experiments)),
        },
        name=f"{setting}-{method}-s${{item.seed}}",
        ckpt=paths.checkpoint_dir(f"{setting}-{first.trained.method}-s${{item.seed}}"),
        param_keys=spec_keys(params, experiments, decoding=True),
    )
    stages: dict[str, Any] = {}
    head_flags, head_deps = "", []
    if method == "act":
        heads = paths.act_heads_json(runs.name)
        stages[f"act_heads_{task}"] = _act_heads_stage(runs, heads)
        head_flags, head_deps = f" --act-heads {heads}", [heads, f"{LIB}/decoding/act.py"]
    stages[f"evaluate_{task}_{method}"] = _evaluate_stage(runs, first, head_flags, head_deps)
    stages[f"analyze_{task}_{method}"] = _analyze_stage(runs, head_flags, head_deps)
    return stages


def _act_heads_stage(runs: _DecodingRuns, heads: str) -> dict[str, Any]:
    """ACT's head search on the clean validation split; it writes the heads file ``heads``."""
    val = runs.features("val", "clean")
    return {
        "matrix": runs.matrix,
        **stage(
            f"{PY}/search_act_heads.py --params params.yaml --experiment {runs.name} --checkpoint {runs.ckpt}"
            f" --corpus-dir {runs.corpus} --utterances {paths.usable_list(runs.params, 'val')}"
            f" {feature_flags(val)} --out-json {heads}",
            deps=[
                *runs.corpus_deps,
                paths.usable_list(runs.params, "val"),
                runs.ckpt,
                *val.values(),
                runs.llm_path,
                "workflow_scripts/search_act_heads.py",
                f"{LIB}/decoding/act.py",
                f"{LIB}/decoding/act_search.py",
                *_DECODING_CODE,
            ],
            params=runs.param_keys,
            outs=[{heads: {"cache": False}}],
        ),
    }


def _evaluate_stage(
    runs: _DecodingRuns, first: Experiment, head_flags: str, head_deps: list[str]
) -> dict[str, Any]:
    """Decoding of the test split under each evaluation condition of the task and method of ``first``
    (one more matrix axis)."""
    test = runs.features("test", "${item.condition}")
    test_list = paths.usable_list(runs.params, "test")
    out_json = paths.eval_json(runs.name, "${item.condition}")
    out_csv = paths.eval_csv(runs.name, "${item.condition}")
    return {
        "matrix": {**runs.matrix, "condition": paths.eval_conditions(runs.params, first)},
        **stage(
            f"{PY}/evaluate.py --params params.yaml --experiment {runs.name} --checkpoint {runs.ckpt}"
            f" --corpus-dir {runs.corpus} --utterances {test_list} {feature_flags(test)}{head_flags}"
            f" --condition ${{item.condition}} --out-json {out_json} --out-csv {out_csv}",
            deps=[
                *runs.corpus_deps,
                test_list,
                runs.ckpt,
                *head_deps,
                *test.values(),
                runs.llm_path,
                "workflow_scripts/evaluate.py",
                *_DECODING_CODE,
            ],
            params=runs.param_keys,
            outs=[{out_csv: {"cache": False}}],
            metrics=[{out_json: {"cache": False}}],
        ),
    }


def _analyze_stage(runs: _DecodingRuns, head_flags: str, head_deps: list[str]) -> dict[str, Any]:
    """The sink analysis of a teacher-forced pass over the clean test split."""
    clean = runs.features("test", "clean")
    test_list = paths.usable_list(runs.params, "test")
    metrics, arrays = paths.analysis_files(runs.name)
    return {
        "matrix": runs.matrix,
        **stage(
            f"{PY}/analyze.py --params params.yaml --experiment {runs.name} --checkpoint {runs.ckpt}"
            f" --corpus-dir {runs.corpus} --utterances {test_list} {feature_flags(clean)}{head_flags}"
            f" --out-dir {metrics.rsplit('/', 1)[0]}",
            deps=[
                *runs.corpus_deps,
                test_list,
                runs.ckpt,
                *head_deps,
                *clean.values(),
                runs.llm_path,
                "workflow_scripts/analyze.py",
                f"{LIB}/workflow/checkpoint_stages.py",
                f"{LIB}/decoding/method.py",
                f"{LIB}/analysis/metrics.py",
                f"{LIB}/analysis/capture.py",
                f"{LIB}/analysis/thresholds.py",
                f"{LIB}/modeling/layer_outputs.py",
                *MODEL_CODE,
            ],
            params=[*runs.param_keys, "analysis"],
            outs=[{arrays: {"cache": False}}],
            metrics=[{metrics: {"cache": False}}],
        ),
    }
