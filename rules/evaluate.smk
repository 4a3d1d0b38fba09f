# Decoding and WER per experiment and test condition.


rule evaluate:
    input:
        corpus=corpus_input(),
        checkpoint=pipeline.checkpoint_dir("{experiment}"),
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
        trigger=eval_trigger,
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=120,
    shell:
        "python workflow_scripts/evaluate.py --params {params.config} --threads {threads}"
        " --experiment {wildcards.experiment} --checkpoint {input.checkpoint:q} --corpus-dir {params.corpus:q}"
        " {params.features} --condition {wildcards.condition}"
        " --out-json {output.json:q} --out-csv {output.csv:q} > {log:q} 2>&1"
