"""Snakemake's own cost: a dry run of the paper grid, and the DAG build plus up-to-date check of the
embedded default that a rerun with nothing to do consists of (budget: each under 15 s). Also checks
from the paper plan that the feature caches are built once per corpus, encoder, split and condition:
one feature job per cache folder, and no experiment name in any cache path.

Both commands run in the checkout (``--workdir``), each timed ``--repeats`` times, alternating. When
the checkout holds no finished run, the default's dry run plans every job; its figure is then the DAG
build and the up-to-date check of all outputs, which is what a no-op rerun does before it exits.

    python bench/orchestration.py [--quick] [--out results/bench/orchestration.json]
"""

from __future__ import annotations

import argparse
import logging
import statistics
from pathlib import Path
from typing import Any

from harness import REPO, budget, spread, write_result
from snakemake_plan import DryRun, dry_run

from avsr_sinks.settings.config import load_params
from avsr_sinks.settings.grid import build_grid
from avsr_sinks.workflow.paths import feature_sets

log = logging.getLogger("bench.orchestration")

FEATURE_RULES = ("audio_features", "video_features")
BUDGET_S = 15.0


def cache_once(plan: DryRun, params_files: list[Path]) -> dict[str, Any]:
    """Whether the plan's feature jobs are one per (modality, split, condition) cache, none per experiment."""
    params = load_params(params_files)
    outputs = [o for j in plan.jobs if j.rule in FEATURE_RULES for o in j.outputs]
    experiments = [e.name for e in build_grid(params)]
    per_experiment = [o for o in outputs if any(name in o for name in experiments)]
    return {
        "feature_jobs": len(outputs),
        "distinct_caches": len(set(outputs)),
        "caches_the_grid_needs": len(feature_sets(params)),
        "experiments": len(experiments),
        "paths_naming_an_experiment": per_experiment,
        "once_per_cache": len(outputs) == len(set(outputs)) == len(feature_sets(params))
        and not per_experiment,
    }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=REPO)
    ap.add_argument("--paper-config", default="configs/paper.yaml")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one run of each")
    ap.add_argument("--out", type=Path, default=Path("results/bench/orchestration.json"))
    args = ap.parse_args()
    repeats = 1 if args.quick else args.repeats
    paper_s, default_s, paper_cpu, default_cpu = [], [], [], []
    for _ in range(repeats):  # alternating, as everywhere in bench/
        paper = dry_run(args.workdir, [args.paper_config])
        default = dry_run(args.workdir)
        paper_s.append(paper.seconds)
        default_s.append(default.seconds)
        paper_cpu.append(paper.cpu_seconds)
        default_cpu.append(default.cpu_seconds)
    pending = len([j for j in default.jobs if j.rule != "all"])
    figures = {
        "paper_dry_run": spread(paper_s)
        | {"jobs": len(paper.jobs), "counts": paper.counts(), "cpu_s_median": statistics.median(paper_cpu)},
        "default_dry_run": spread(default_s)
        | {
            "jobs_pending": pending,
            "nothing_to_do": default.nothing_to_do,
            "cpu_s_median": statistics.median(default_cpu),
        },
        "feature_cache_once": cache_once(
            paper, [args.workdir / "params.yaml", args.workdir / args.paper_config]
        ),
    }
    default_note = (
        "a true no-op rerun (nothing to do)"
        if default.nothing_to_do
        else f"DAG build and up-to-date check with {pending} jobs pending in {args.workdir}"
    )
    budgets = [
        budget("snakemake -n, paper grid", spread(paper_s)["median_s"], BUDGET_S, "max", "s"),
        budget(
            "no-op rerun, embedded default", spread(default_s)["median_s"], BUDGET_S, "max", "s", default_note
        ),
        budget(
            "feature cache once per corpus x encoder x split x condition",
            float(figures["feature_cache_once"]["once_per_cache"]),
            1.0,
            "min",
            "true=1",
        ),
    ]
    inputs = {"workdir": str(args.workdir), "paper_config": args.paper_config}
    write_result(args.out, "orchestration", args.quick, inputs, figures, budgets)


if __name__ == "__main__":
    main()
