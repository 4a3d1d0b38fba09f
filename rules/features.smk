# Frozen encoder outputs, cached once per corpus x encoder x split x condition (never per experiment).
# Noise conditions change the audio only: video features are made once, "clean", and serve every condition.


rule audio_features:
    input:
        corpus=corpus_input(),
        usable=paths.media_checked_list(PARAMS, "{split}"),
        # Babble is drawn from the training speakers that passed the check.
        babble=paths.media_checked_list(PARAMS, "train"),
        encoder=audio_encoder_input(),
    output:
        directory(paths.feature_dir(PARAMS, "audio", "{split}", "{condition}")),
    log:
        f"logs/features/{paths.audio_encoder_id(PARAMS)}/{{split}}-{{condition}}.log",
    benchmark:
        f"logs/benchmarks/features/{paths.audio_encoder_id(PARAMS)}/{{split}}-{{condition}}.tsv"
    params:
        config=CONFIG_ARGS,
        corpus=input_path("corpus", CORPUS_ROOT),
        encoder=input_path("encoder", PARAMS["audio_encoder"]["path"]),
    threads: THREADS
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(120),
    shell:
        "python workflow_scripts/extract_features.py --params {params.config} --threads {threads}"
        " --modality audio --corpus-dir {params.corpus:q} --utterances {input.usable:q}"
        " --babble-utterances {input.babble:q} --encoder-dir {params.encoder:q}"
        " --split {wildcards.split} --condition {wildcards.condition} --out-dir {output:q} > {log:q} 2>&1"


rule video_features:
    input:
        corpus=corpus_input(),
        usable=paths.media_checked_list(PARAMS, "{split}"),
        encoder=video_encoder_input(),
    output:
        directory(paths.feature_dir(PARAMS, "video", "{split}", "clean")),
    log:
        f"logs/features/{paths.video_encoder_id(PARAMS)}/{{split}}-clean.log",
    benchmark:
        f"logs/benchmarks/features/{paths.video_encoder_id(PARAMS)}/{{split}}-clean.tsv"
    params:
        config=CONFIG_ARGS,
        corpus=input_path("corpus", CORPUS_ROOT),
        encoder=input_path("encoder", PARAMS["video_encoder"]["path"]),
    threads: THREADS
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(120),
    shell:
        "python workflow_scripts/extract_features.py --params {params.config} --threads {threads}"
        " --modality video --corpus-dir {params.corpus:q} --utterances {input.usable:q}"
        " --encoder-dir {params.encoder:q}"
        " --split {wildcards.split} --condition clean --out-dir {output:q} > {log:q} 2>&1"
