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
from avsr_sinks.grid import build_grid

PY = "python workflow_scripts"
LIB = "src/avsr_sinks"
# Library modules every model stage imports, so a code change reruns what it affects.
MODEL_CODE = [f"{LIB}/model.py", f"{LIB}/features.py", f"{LIB}/experiment.py", f"{LIB}/config.py"]


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


def _feature_flags(caches: Mapping[str, str]) -> str:
    return " ".join(f"--features {m}={path}" for m, path in caches.items())


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
    enc = params["audio_encoder"]
    if params["corpus"]["kind"] == "synthetic":
        out = pipeline.corpus_intelligibility(params)
        stages["corpus_intelligibility"] = _stage(
            f"{PY}/check_intelligibility.py --params params.yaml --corpus-dir {corpus}"
            f" --whisper-dir {enc['path']} --split test --window-seconds {enc['window_seconds']}"
            f" --out-json {out}",
            deps=[corpus, enc["path"], "workflow_scripts/check_intelligibility.py"],
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
    if llm["source"] == "shipped":
        stages["install_lm"] = _stage(
            f"{PY}/install_lm.py --params params.yaml --asset-dir {llm['asset']} --out-dir {llm['path']}"
            " --summary results/lm/pretrain.json --log-csv results/lm/pretrain_log.csv",
            deps=[llm["asset"], "workflow_scripts/install_lm.py", f"{LIB}/lm_asset.py"],
            params=["llm", "corpus.synth"],
            outs=[llm["path"], {"results/lm/pretrain_log.csv": {"cache": False}}],
            metrics=[{"results/lm/pretrain.json": {"cache": False}}],
        )
    if llm["source"] == "pretrain":
        stages["pretrain_lm"] = _stage(
            f"{PY}/pretrain_lm.py --params params.yaml --corpus-dir {corpus} --out-dir {llm['path']}"
            " --log-csv results/lm/pretrain_log.csv --summary results/lm/pretrain.json",
            deps=[*corpus_deps, "workflow_scripts/pretrain_lm.py", f"{LIB}/lm.py", f"{LIB}/data/text.py"],
            params=["llm", "corpus.synth"],
            outs=[llm["path"], {"results/lm/pretrain_log.csv": {"cache": False}}],
            metrics=[{"results/lm/pretrain.json": {"cache": False}}],
        )
    video = params["video_encoder"]
    uses_video = any("video" in e.modalities for e in build_grid(params))
    if uses_video and video["source"] == "pretrain":
        stages["pretrain_video_encoder"] = _stage(
            f"{PY}/pretrain_video_encoder.py --params params.yaml --corpus-dir {corpus}"
            f" --out-dir {video['path']} --log-csv {pipeline.VIDEO_PRETRAIN_LOG}"
            f" --summary {pipeline.VIDEO_PRETRAIN_SUMMARY}",
            deps=[
                *corpus_deps,
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
        stages[f"{modality}_features"] = {
            "foreach": sets,
            "do": _stage(
                f"{PY}/extract_features.py --params params.yaml --modality {modality} --corpus-dir {corpus}"
                f" --encoder-dir {encoder_dirs[modality]} --split ${{item.split}}"
                f" --condition ${{item.condition}} --out-dir {features}",
                deps=[
                    *corpus_deps,
                    encoder_dirs[modality],
                    "workflow_scripts/extract_features.py",
                    f"{LIB}/features.py",
                    f"{LIB}/encoders",
                ],
                params=[encoder_params[modality], "corpus.on_bad_sample"],
                outs=[features],
            ),
        }
    experiments = build_grid(params)
    conditions = list(params["evaluate"]["conditions"])
    for task in dict.fromkeys(e.task for e in experiments):
        names = [e.name for e in experiments if e.task == task]
        modalities = next(e.modalities for e in experiments if e.task == task)
        model_params = ["model", "train", "llm", *(encoder_params[m] for m in modalities)]
        train_features = {m: pipeline.feature_dir(params, m, "train", "clean") for m in modalities}
        stages[f"train_{task}"] = {
            "matrix": {"experiment": names},
            **_stage(
                f"{PY}/train.py --params params.yaml --experiment ${{item.experiment}} --corpus-dir {corpus}"
                f" {_feature_flags(train_features)} --lm-dir {llm['path']}"
                f" --out-dir {pipeline.checkpoint_dir('${item.experiment}')}"
                f" --resume-dir {pipeline.resume_dir('${item.experiment}')}",
                deps=[
                    *corpus_deps,
                    *train_features.values(),
                    llm["path"],
                    "workflow_scripts/train.py",
                    f"{LIB}/train.py",
                    *MODEL_CODE,
                ],
                params=model_params,
                outs=[pipeline.checkpoint_dir("${item.experiment}")],
            ),
        }
        ckpt = pipeline.checkpoint_dir("${item.experiment}")
        out_json = pipeline.eval_json("${item.experiment}", "${item.condition}")
        test_features = {m: pipeline.feature_dir(params, m, "test", "${item.condition}") for m in modalities}
        stages[f"evaluate_{task}"] = {
            "matrix": {"experiment": names, "condition": conditions},
            **_stage(
                f"{PY}/evaluate.py --params params.yaml --experiment ${{item.experiment}} --checkpoint {ckpt}"
                f" --corpus-dir {corpus} {_feature_flags(test_features)}"
                f" --condition ${{item.condition}} --out-json {out_json}"
                f" --out-csv {pipeline.eval_csv('${item.experiment}', '${item.condition}')}",
                deps=[
                    *corpus_deps,
                    ckpt,
                    *test_features.values(),
                    llm["path"],
                    "workflow_scripts/evaluate.py",
                    f"{LIB}/decode.py",
                    *MODEL_CODE,
                ],
                params=[*model_params, "decode"],
                outs=[{pipeline.eval_csv("${item.experiment}", "${item.condition}"): {"cache": False}}],
                metrics=[{out_json: {"cache": False}}],
            ),
        }
    evals = pipeline.eval_targets(params)
    csv, md = pipeline.WER_TABLES
    stages["wer_tables"] = _stage(
        f"{PY}/make_tables.py --eval-files {' '.join(evals)} --out-csv {csv} --out-md {md}",
        deps=[*evals, "workflow_scripts/make_tables.py", f"{LIB}/report/tables.py"],
        outs=[{csv: {"cache": False}}, {md: {"cache": False}}],
    )
    return {"stages": stages}


def render(params: Mapping[str, Any]) -> str:
    header = "# Generated by `make dvc.yaml` (avsr_sinks.dvcgen) from params.yaml: do not edit by hand.\n"
    return header + yaml.safe_dump(dvc_pipeline(params), sort_keys=False, width=200)
