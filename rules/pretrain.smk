# Frozen models of the embedded default: Whisper tiny.en converted from its bundled copy, and the small
# Llama pretrained on text. At paper scale both come from local folders and these rules do not apply.

if PARAMS["audio_encoder"]["source"] == "bundled":

    rule convert_whisper:
        output:
            directory(PARAMS["audio_encoder"]["path"]),
        log:
            "logs/models/convert_whisper.log",
        benchmark:
            "logs/benchmarks/models/convert_whisper.tsv"
        resources:
            mem_mb=2000,
            runtime=10,
        shell:
            "python workflow_scripts/convert_whisper.py --out-dir {output:q} > {log:q} 2>&1"


if PARAMS["llm"]["source"] == "pretrain":

    rule pretrain_lm:
        input:
            corpus=corpus_input(),
        output:
            model=directory(PARAMS["llm"]["path"]),
            log_csv="results/lm/pretrain_log.csv",
            summary="results/lm/pretrain.json",
        log:
            "logs/models/pretrain_lm.log",
        benchmark:
            "logs/benchmarks/models/pretrain_lm.tsv"
        params:
            config=CONFIG_ARGS,
            trigger=json.dumps(
                {"llm": PARAMS["llm"], "synth": PARAMS["corpus"]["synth"]}, sort_keys=True
            ),
        threads: THREADS
        resources:
            mem_mb=4000,
            runtime=60,
        shell:
            "python workflow_scripts/pretrain_lm.py --params {params.config} --threads {threads}"
            " --corpus-dir {input.corpus:q} --out-dir {output.model:q} --log-csv {output.log_csv:q}"
            " --summary {output.summary:q} > {log:q} 2>&1"
