# Tables from the evaluation files.


rule wer_tables:
    input:
        pipeline.eval_targets(PARAMS),
    output:
        csv=pipeline.WER_TABLES[0],
        md=pipeline.WER_TABLES[1],
    log:
        "logs/report/wer_tables.log",
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "python workflow_scripts/make_tables.py --eval-files {input:q} --out-csv {output.csv:q}"
        " --out-md {output.md:q} > {log:q} 2>&1"


rule sink_tables:
    input:
        [pipeline.analysis_files(e)[0] for e in EXPERIMENTS.values()],
    output:
        csv=pipeline.SINK_TABLES[0],
        md=pipeline.SINK_TABLES[1],
    log:
        "logs/report/sink_tables.log",
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "python workflow_scripts/make_tables.py --analysis-files {input:q} --out-csv {output.csv:q}"
        " --out-md {output.md:q} > {log:q} 2>&1"


rule figures:
    input:
        [pipeline.analysis_files(e)[1] for e in EXPERIMENTS.values()],
    output:
        pipeline.FIGURES_DONE,
    log:
        "logs/report/figures.log",
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        out_dir=lambda wildcards, output: str(Path(output[0]).parent),
    shell:
        "python workflow_scripts/make_figures.py --arrays {input:q} --out-dir {params.out_dir:q}"
        " --index {output:q} > {log:q} 2>&1"
