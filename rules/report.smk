# Tables and figures from the evaluation and analysis files. Outputs flagged with report() make up
# `snakemake --report results/report.html` (captions in rules/captions/); see `make report`.


rule wer_tables:
    input:
        paths.eval_targets(PARAMS),
    output:
        csv=report(paths.WER_TABLES[0], caption="captions/wer.rst", category="Tables", subcategory="WER"),
        md=paths.WER_TABLES[1],
    log:
        "logs/report/wer_tables.log",
    benchmark:
        "logs/benchmarks/report/wer_tables.tsv"
    params:
        conditions=PARAMS["evaluate"]["conditions"],  # a condition added to the grid rebuilds the table
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "python workflow_scripts/make_tables.py --eval-files {input:q} --out-csv {output.csv:q}"
        " --out-md {output.md:q} > {log:q} 2>&1"


rule summary_tables:
    input:
        wer=paths.WER_TABLES[0],
        paper=paths.PAPER_RESULTS,
    output:
        main_csv=report(paths.MAIN_TABLES[0], caption="captions/main.rst", category="Tables", subcategory="WER"),
        main_md=paths.MAIN_TABLES[1],
        main_tex=paths.MAIN_TABLES[2],
        robustness_csv=report(
            paths.ROBUSTNESS_TABLES[0], caption="captions/robustness.rst", category="Tables", subcategory="WER"
        ),
        robustness_md=paths.ROBUSTNESS_TABLES[1],
        paper_csv=report(
            paths.PAPER_TABLES[0], caption="captions/paper_vs_reproduced.rst", category="Tables", subcategory="WER"
        ),
        paper_md=paths.PAPER_TABLES[1],
    log:
        "logs/report/summary_tables.log",
    benchmark:
        "logs/benchmarks/report/summary_tables.tsv"
    params:
        conditions=PARAMS["evaluate"]["conditions"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "python workflow_scripts/make_summary_tables.py --wer-csv {input.wer:q} --paper-results {input.paper:q}"
        " --main {output.main_csv:q} {output.main_md:q} {output.main_tex:q}"
        " --robustness {output.robustness_csv:q} {output.robustness_md:q}"
        " --paper-vs-reproduced {output.paper_csv:q} {output.paper_md:q} > {log:q} 2>&1"


rule sink_tables:
    input:
        [paths.analysis_files(e)[0] for e in EXPERIMENTS.values()],
    output:
        csv=report(paths.SINK_TABLES[0], caption="captions/sinks.rst", category="Tables", subcategory="Sinks"),
        md=paths.SINK_TABLES[1],
    log:
        "logs/report/sink_tables.log",
    benchmark:
        "logs/benchmarks/report/sink_tables.tsv"
    params:
        thresholds={k: PARAMS["analysis"][k] for k in ("sink_threshold", "massive_abs", "massive_ratio")},
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "python workflow_scripts/make_tables.py --analysis-files {input:q} --out-csv {output.csv:q}"
        " --out-md {output.md:q} > {log:q} 2>&1"


rule claims_table:
    input:
        sinks=paths.SINK_TABLES[0],
        wer=paths.WER_TABLES[0],
    output:
        csv=report(paths.CLAIMS_TABLES[0], caption="captions/claims.rst", category="Tables", subcategory="Sinks"),
        md=paths.CLAIMS_TABLES[1],
    log:
        "logs/report/claims_table.log",
    benchmark:
        "logs/benchmarks/report/claims_table.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "python workflow_scripts/make_claims_table.py --sinks-csv {input.sinks:q} --wer-csv {input.wer:q}"
        " --out-csv {output.csv:q} --out-md {output.md:q} > {log:q} 2>&1"


rule tables_page:
    input:
        paths.results_tables(),
    output:
        report(paths.TABLES_PAGE, caption="captions/tables_page.rst", category="Tables", subcategory="All tables"),
    log:
        "logs/report/tables_page.log",
    benchmark:
        "logs/benchmarks/report/tables_page.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "python workflow_scripts/make_tables_page.py --tables {input:q} --out {output:q} > {log:q} 2>&1"


rule figures:
    input:
        [paths.analysis_files(e)[1] for e in EXPERIMENTS.values()],
    output:
        report(
            directory(paths.FIGURES_DIR),
            patterns=["{task,asr|vsr|avsr}-{name}.png"],
            caption="captions/figures.rst",
            category="Figures",
            subcategory="{task}",
            labels={"task": "{task}", "figure": "{name}"},
        ),
    log:
        "logs/report/figures.log",
    benchmark:
        "logs/benchmarks/report/figures.tsv"
    params:
        index=paths.FIGURES_INDEX,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python workflow_scripts/make_figures.py --arrays {input:q} --out-dir {output:q}"
        " --index {params.index:q} > {log:q} 2>&1"
