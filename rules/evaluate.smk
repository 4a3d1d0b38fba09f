# Decoding and WER per experiment and test condition.


rule evaluate:
    input:
        corpus=corpus_input(),
        usable=paths.usable_list(PARAMS, "test"),
        checkpoint=checkpoint_input,
        act_heads=act_heads_input,
        features=features_input("test"),
        llm=llm_input(),
    output:
        json=paths.eval_json("{experiment}", "{condition}"),
        csv=paths.eval_csv("{experiment}", "{condition}"),
    log:
        "logs/eval/{experiment}/{condition}.log",
    benchmark:
        "logs/benchmarks/eval/{experiment}/{condition}.tsv"
    params:
        config=CONFIG_ARGS,
        corpus=input_path("corpus", CORPUS_ROOT),
        features=features_flags("test"),
        act_heads=act_heads_arg,
        trigger=eval_trigger,
    threads: THREADS
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(120),
    shell:
        "python workflow_scripts/evaluate.py --params {params.config} --threads {threads}"
        " --experiment {wildcards.experiment} --checkpoint {input.checkpoint:q} --corpus-dir {params.corpus:q}"
        " --utterances {input.usable:q}"
        " {params.features} {params.act_heads} --condition {wildcards.condition}"
        " --out-json {output.json:q} --out-csv {output.csv:q} > {log:q} 2>&1"


rule act_heads:
    input:
        corpus=corpus_input(),
        usable=paths.usable_list(PARAMS, "val"),
        checkpoint=checkpoint_input,
        features=features_input("val", "clean"),
        llm=llm_input(),
    output:
        paths.act_heads_json("{experiment}"),
    log:
        "logs/act/{experiment}.log",
    benchmark:
        "logs/benchmarks/act/{experiment}.tsv"
    wildcard_constraints:
        experiment="|".join(name for name, e in EXPERIMENTS.items() if e.method == "act") or "(?!)",
    params:
        config=CONFIG_ARGS,
        corpus=input_path("corpus", CORPUS_ROOT),
        features=features_flags("val", "clean"),
        trigger=eval_trigger,
    threads: THREADS
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(120),
    shell:
        "python workflow_scripts/search_act_heads.py --params {params.config} --threads {threads}"
        " --experiment {wildcards.experiment} --checkpoint {input.checkpoint:q} --corpus-dir {params.corpus:q}"
        " --utterances {input.usable:q}"
        " {params.features} --out-json {output:q} > {log:q} 2>&1"


rule analyze:
    input:
        corpus=corpus_input(),
        usable=paths.usable_list(PARAMS, "test"),
        checkpoint=checkpoint_input,
        act_heads=act_heads_input,
        features=features_input("test", "clean"),
        llm=llm_input(),
    output:
        metrics=paths.analysis_files("{experiment}")[0],
        arrays=paths.analysis_files("{experiment}")[1],
    log:
        "logs/analysis/{experiment}.log",
    benchmark:
        "logs/benchmarks/analysis/{experiment}.tsv"
    params:
        config=CONFIG_ARGS,
        corpus=input_path("corpus", CORPUS_ROOT),
        features=features_flags("test", "clean"),
        act_heads=act_heads_arg,
        out_dir=analysis_folder,
        trigger=analysis_trigger,
    threads: THREADS
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(60),
    shell:
        "python workflow_scripts/analyze.py --params {params.config} --threads {threads}"
        " --experiment {wildcards.experiment} --checkpoint {input.checkpoint:q} --corpus-dir {params.corpus:q}"
        " --utterances {input.usable:q}"
        " {params.features} {params.act_heads} --out-dir {params.out_dir:q} > {log:q} 2>&1"
