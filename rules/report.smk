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
