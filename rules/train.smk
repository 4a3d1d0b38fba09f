# One training job per experiment: projectors + LoRA on the cached features.


rule train:
    input:
        corpus=corpus_input(),
        usable=paths.usable_list(PARAMS, "train"),
        features=features_input("train", "clean"),
        noisy_features=noisy_features_input,
        warm_start=warm_start_input,
        branch=branch_input,
        llm=llm_input(),
    output:
        directory(paths.checkpoint_dir("{experiment}")),
    wildcard_constraints:
        experiment="|".join(e.name for e in paths.trained_experiments(PARAMS)) or "(?!)",
    log:
        "logs/train/{experiment}.log",
    benchmark:
        "logs/benchmarks/train/{experiment}.tsv"
    params:
        config=CONFIG_ARGS,
        corpus=input_path("corpus", CORPUS_ROOT),
        llm=input_path("llm", PARAMS["llm"]["path"]),
        features=features_flags("train", "clean"),
        noisy_features=noisy_features_flags,
        warm_start=warm_start_flags,
        branch=branch_flag,
        resume=resume_path,
        trigger=train_trigger,
    threads: THREADS
    # The trainings are the long chain (AVSR waits for its ASR and VSR runs): they go first whenever a core
    # is free, ahead of the decodings that could fill it.
    priority: 10
    resources:
        mem_mb=per_attempt(6000),
        runtime=per_attempt(240),
        gpu=0,  # the embedded default trains on the CPU; profiles/slurm asks for one GPU per training job
    shell:
        "python workflow_scripts/train.py --params {params.config} --threads {threads}"
        " --experiment {wildcards.experiment} --corpus-dir {params.corpus:q} --utterances {input.usable:q}"
        " {params.features} {params.noisy_features} {params.warm_start} {params.branch} --lm-dir {params.llm:q} --out-dir {output:q}"
        " --resume-dir {params.resume:q} > {log:q} 2>&1"
