# The pipeline's entry point: configuration, the rule files, and the targets of a whole run.
# Run: snakemake --cores 2 [--configfile configs/ci.yaml]; see README.md.
from snakemake.utils import min_version

min_version("9.14.1")


configfile: "params.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/pretrain.smk"
include: "rules/features.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    input:
        pipeline.final_targets(PARAMS),
    default_target: True
