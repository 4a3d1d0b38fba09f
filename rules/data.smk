# The synthetic audio-visual corpus (embedded default). External corpora (LRS3, LRS2) are read in place.

if PARAMS["corpus"]["kind"] == "synthetic":

    rule make_corpus:
        output:
            corpus=directory(CORPUS_ROOT),
            card_md=paths.corpus_card(PARAMS, "md"),
            card_json=paths.corpus_card(PARAMS, "json"),
        log:
            f"logs/corpus/{PARAMS['corpus']['name']}.log",
        benchmark:
            f"logs/benchmarks/corpus/{PARAMS['corpus']['name']}.tsv"
        params:
            config=CONFIG_ARGS,
            trigger=settings_trigger(PARAMS["corpus"]["synth"]),
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
            usable=paths.media_checked_list(PARAMS, "test"),
            whisper=audio_encoder_input(),
        output:
            paths.corpus_intelligibility(PARAMS),
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
            " --corpus-dir {input.corpus:q} --utterances {input.usable:q} --whisper-dir {params.whisper:q}"
            " --window-seconds {params.window}"
            " --out-json {output:q} > {log:q} 2>&1"


# The corpus check (avsr_sinks.data.validation), once per split: every later stage reads its lists, so a
# sample refused (or, with corpus.on_bad_sample: skip, skipped) is refused by every stage alike. Two
# passes, so that a new LLM rechecks the transcripts without invalidating the feature caches.


rule check_corpus_media:
    input:
        corpus=corpus_input(),
    output:
        usable=paths.media_checked_list(PARAMS, "{split}"),
        skipped=paths.media_skip_report(PARAMS, "{split}"),
    log:
        f"logs/corpus/{PARAMS['corpus']['name']}/{{split}}.media.log",
    benchmark:
        f"logs/benchmarks/corpus/{PARAMS['corpus']['name']}/{{split}}.media.tsv"
    params:
        config=CONFIG_ARGS,
        corpus=input_path("corpus", CORPUS_ROOT),
        trigger=corpus_check_trigger(),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    shell:
        "python workflow_scripts/check_corpus_media.py --params {params.config} --threads {threads}"
        " --corpus-dir {params.corpus:q} --split {wildcards.split}"
        " --out-usable {output.usable:q} --out-skipped {output.skipped:q} > {log:q} 2>&1"


rule check_corpus_text:
    input:
        usable=paths.media_checked_list(PARAMS, "{split}"),
        skipped=paths.media_skip_report(PARAMS, "{split}"),
        llm=llm_input(),
    output:
        usable=paths.usable_list(PARAMS, "{split}"),
        skipped=paths.skip_report(PARAMS, "{split}"),
        card=paths.check_card(PARAMS, "{split}"),
    log:
        f"logs/corpus/{PARAMS['corpus']['name']}/{{split}}.text.log",
    benchmark:
        f"logs/benchmarks/corpus/{PARAMS['corpus']['name']}/{{split}}.text.tsv"
    params:
        config=CONFIG_ARGS,
        corpus=CORPUS_ROOT,
        llm=input_path("llm", PARAMS["llm"]["path"]),
        trigger=corpus_check_trigger(),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python workflow_scripts/check_corpus_text.py --params {params.config} --threads {threads}"
        " --corpus-dir {params.corpus:q} --split {wildcards.split} --media-usable {input.usable:q}"
        " --media-skipped {input.skipped:q} --llm-dir {params.llm:q} --out-usable {output.usable:q}"
        " --out-skipped {output.skipped:q} --out-card {output.card:q} > {log:q} 2>&1"
