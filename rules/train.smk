# One training job per experiment: projectors + LoRA on the cached features.


rule train:
    input:
        corpus=corpus_input(),
        usable=pipeline.usable_list(PARAMS, "train"),
        features=lambda wildcards: list(
            pipeline.experiment_features(PARAMS, wildcards.experiment, "train").values()
        ),
        noisy_features=lambda wildcards: list(
            pipeline.noisy_train_features(PARAMS, wildcards.experiment).values()
        ),
        warm_start=lambda wildcards: [
            pipeline.checkpoint_dir(e) for e in warm_start_sources(PARAMS, parse_name(wildcards.experiment))
        ],
        llm=llm_input(),
    output:
        directory(pipeline.checkpoint_dir("{experiment}")),
    wildcard_constraints:
        experiment="|".join(e.name for e in pipeline.trained_experiments(PARAMS)) or "(?!)",
    log:
        "logs/train/{experiment}.log",
    benchmark:
        "logs/benchmarks/train/{experiment}.tsv"
    params:
        config=CONFIG_ARGS,
        corpus=input_path("corpus", CORPUS_ROOT),
        llm=input_path("llm", PARAMS["llm"]["path"]),
        features=lambda wildcards: feature_args(wildcards.experiment, "train", "clean"),
        noisy_features=lambda wildcards: noisy_feature_args(wildcards.experiment),
        warm_start=lambda wildcards, input: " ".join(f"--warm-start {shlex.quote(p)}" for p in input.warm_start),
        resume=lambda wildcards: pipeline.resume_dir(wildcards.experiment),
        trigger=train_trigger,
    threads: THREADS
    resources:
        mem_mb=lambda wildcards, attempt: 6000 * attempt,
        runtime=lambda wildcards, attempt: 240 * attempt,
        gpu=0,  # the embedded default trains on the CPU; profiles/slurm asks for one GPU per training job
    shell:
        "python workflow_scripts/train.py --params {params.config} --threads {threads}"
        " --experiment {wildcards.experiment} --corpus-dir {params.corpus:q} --utterances {input.usable:q}"
        " {params.features} {params.noisy_features} {params.warm_start} --lm-dir {params.llm:q} --out-dir {output:q}"
        " --resume-dir {params.resume:q} > {log:q} 2>&1"
