# The synthetic audio-visual corpus (embedded default). External corpora (LRS3, LRS2) are read in place.

if PARAMS["corpus"]["kind"] == "synthetic":

    rule make_corpus:
        output:
            corpus=directory(CORPUS_ROOT),
            card_md=pipeline.corpus_card(PARAMS, "md"),
            card_json=pipeline.corpus_card(PARAMS, "json"),
        log:
            f"logs/corpus/{PARAMS['corpus']['name']}.log",
        benchmark:
            f"logs/benchmarks/corpus/{PARAMS['corpus']['name']}.tsv"
        params:
            config=CONFIG_ARGS,
            trigger=json.dumps(PARAMS["corpus"]["synth"], sort_keys=True),
        threads: workflow.cores
        resources:
            mem_mb=4000,
            runtime=30,
        shell:
            "python workflow_scripts/make_corpus.py --params {params.config} --workers {threads}"
            " --out-dir {output.corpus:q} --card-md {output.card_md:q} --card-json {output.card_json:q}"
            " > {log:q} 2>&1"

    rule corpus_intelligibility:
        input:
            corpus=CORPUS_ROOT,
            whisper=audio_encoder_input(),
        output:
            pipeline.corpus_intelligibility(PARAMS),
        log:
            f"logs/corpus/{PARAMS['corpus']['name']}.intelligibility.log",
        benchmark:
            f"logs/benchmarks/corpus/{PARAMS['corpus']['name']}.intelligibility.tsv"
        params:
            config=CONFIG_ARGS,
            whisper=input_path("whisper", PARAMS["audio_encoder"]["path"]),
            window=PARAMS["audio_encoder"]["window_seconds"],
        threads: THREADS
        resources:
            mem_mb=4000,
            runtime=30,
        shell:
            "python workflow_scripts/check_intelligibility.py --params {params.config} --threads {threads}"
            " --corpus-dir {input.corpus:q} --whisper-dir {params.whisper:q} --split test"
            " --window-seconds {params.window}"
            " --out-json {output:q} > {log:q} 2>&1"
