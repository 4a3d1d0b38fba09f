# The pipeline's entry point: configuration, the rule files, and the targets of a whole run.
# Run: snakemake --cores 2 [--configfile configs/ci.yaml]; see README.md.
#
# `snakemake --lint` asks for a conda environment or container per rule. Every rule runs in the one
# environment that `make setup` builds from requirements.lock (PyPI only, no conda on the target
# machines); a per-rule environment would be a second, drifting copy of that lock. That lint is the only
# finding left, on purpose.
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
        paths.final_targets(PARAMS),
    default_target: True
