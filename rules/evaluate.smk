# Decoding and WER per experiment and test condition.


rule evaluate:
    input:
        corpus=corpus_input(),
        usable=pipeline.usable_list(PARAMS, "test"),
        checkpoint=lambda wildcards: pipeline.checkpoint_dir(EXPERIMENTS[wildcards.experiment]),
        act_heads=act_heads_input,
        features=lambda wildcards: list(
            pipeline.experiment_features(PARAMS, wildcards.experiment, "test", wildcards.condition).values()
        ),
        llm=llm_input(),
    output:
        json=pipeline.eval_json("{experiment}", "{condition}"),
        csv=pipeline.eval_csv("{experiment}", "{condition}"),
    log:
        "logs/eval/{experiment}/{condition}.log",
    benchmark:
        "logs/benchmarks/eval/{experiment}/{condition}.tsv"
    params:
        config=CONFIG_ARGS,
        corpus=input_path("corpus", CORPUS_ROOT),
        features=lambda wildcards: feature_args(wildcards.experiment, "test", wildcards.condition),
        act_heads=act_heads_arg,
        trigger=eval_trigger,
    threads: THREADS
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 120 * attempt,
    shell:
        "python workflow_scripts/evaluate.py --params {params.config} --threads {threads}"
        " --experiment {wildcards.experiment} --checkpoint {input.checkpoint:q} --corpus-dir {params.corpus:q}"
        " --utterances {input.usable:q}"
        " {params.features} {params.act_heads} --condition {wildcards.condition}"
        " --out-json {output.json:q} --out-csv {output.csv:q} > {log:q} 2>&1"


rule act_heads:
    input:
        corpus=corpus_input(),
        usable=pipeline.usable_list(PARAMS, "val"),
        checkpoint=lambda wildcards: pipeline.checkpoint_dir(EXPERIMENTS[wildcards.experiment]),
        features=lambda wildcards: list(
            pipeline.experiment_features(PARAMS, wildcards.experiment, "val").values()
        ),
        llm=llm_input(),
    output:
        pipeline.act_heads_json("{experiment}"),
    log:
        "logs/act/{experiment}.log",
    benchmark:
        "logs/benchmarks/act/{experiment}.tsv"
    wildcard_constraints:
        experiment="|".join(name for name, e in EXPERIMENTS.items() if e.method == "act") or "(?!)",
    params:
        config=CONFIG_ARGS,
        corpus=input_path("corpus", CORPUS_ROOT),
        features=lambda wildcards: feature_args(wildcards.experiment, "val", "clean"),
        trigger=eval_trigger,
    threads: THREADS
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 120 * attempt,
    shell:
        "python workflow_scripts/search_act_heads.py --params {params.config} --threads {threads}"
        " --experiment {wildcards.experiment} --checkpoint {input.checkpoint:q} --corpus-dir {params.corpus:q}"
        " --utterances {input.usable:q}"
        " {params.features} --out-json {output:q} > {log:q} 2>&1"


rule analyze:
    input:
        corpus=corpus_input(),
        usable=pipeline.usable_list(PARAMS, "test"),
        checkpoint=lambda wildcards: pipeline.checkpoint_dir(EXPERIMENTS[wildcards.experiment]),
        act_heads=act_heads_input,
        features=lambda wildcards: list(
            pipeline.experiment_features(PARAMS, wildcards.experiment, "test").values()
        ),
        llm=llm_input(),
    output:
        metrics=pipeline.analysis_files("{experiment}")[0],
        arrays=pipeline.analysis_files("{experiment}")[1],
    log:
        "logs/analysis/{experiment}.log",
    benchmark:
        "logs/benchmarks/analysis/{experiment}.tsv"
    params:
        config=CONFIG_ARGS,
        corpus=input_path("corpus", CORPUS_ROOT),
        features=lambda wildcards: feature_args(wildcards.experiment, "test", "clean"),
        act_heads=act_heads_arg,
        out_dir=lambda wildcards, output: str(Path(output.metrics).parent),
        trigger=lambda wildcards: json.dumps(
            {**json.loads(eval_trigger(wildcards)), "analysis": PARAMS["analysis"]}, sort_keys=True
        ),
    threads: THREADS
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
    shell:
        "python workflow_scripts/analyze.py --params {params.config} --threads {threads}"
        " --experiment {wildcards.experiment} --checkpoint {input.checkpoint:q} --corpus-dir {params.corpus:q}"
        " --utterances {input.usable:q}"
        " {params.features} {params.act_heads} --out-dir {params.out_dir:q} > {log:q} 2>&1"
