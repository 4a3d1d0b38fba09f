# Configuration and input functions: the only Python of the workflow.
import json
import os
import re
import shlex
from pathlib import Path

from snakemake.utils import validate

from avsr_sinks.workflow import paths
from avsr_sinks.settings.config import SCHEMA_PATH, load_params
from avsr_sinks.settings.spec import branch_source, resolve_run, warm_start_sources
from avsr_sinks.settings.grid import build_grid, parse_name

# params.yaml plus every --configfile overlay, in Snakemake's order. Our loader validates the merge and
# names the file and key of each problem; Snakemake's own validate then checks its merged config too.
# Snakemake makes the overlay paths absolute; inside the run folder they are kept relative, so that a
# moved or copied run folder has the same params and nothing reruns.
CONFIG_FILES = [
    "params.yaml",
    *[
        os.path.relpath(f) if Path(f).is_relative_to(Path.cwd()) else str(f)
        for f in workflow.overwrite_configfiles
    ],
]
PARAMS = load_params(CONFIG_FILES)


validate(config, str(SCHEMA_PATH))

CONFIG_ARGS = " ".join(shlex.quote(f) for f in CONFIG_FILES)
THREADS = PARAMS["runtime"]["threads"]
EXPERIMENTS = {e.name: e for e in build_grid(PARAMS)}
CORPUS_ROOT = paths.corpus_root(PARAMS)


wildcard_constraints:
    split="train|val|test",
    condition="|".join(
        re.escape(c)
        for c in sorted({"clean", *PARAMS["evaluate"]["conditions"], paths.train_noise_condition(PARAMS)} - {None})
    ),
    experiment="|".join(EXPERIMENTS) or "(?!)",


def local_or_built(path, built):
    """A folder made by a rule is an input; a user-provided folder is one only once it exists, so that a
    dry run lists the paper-scale jobs before the data and models are in place."""
    return [path] if built or Path(path).exists() else []


def corpus_input():
    return local_or_built(CORPUS_ROOT, PARAMS["corpus"]["kind"] == "synthetic")


def audio_encoder_input():
    enc = PARAMS["audio_encoder"]
    return local_or_built(enc["path"], enc["source"] == "bundled")


def video_encoder_input():
    enc = PARAMS["video_encoder"]
    return local_or_built(enc["path"], enc["source"] in ("pretrain", "fairseq"))


def features_input(split, condition=None):
    """The feature caches an experiment reads on ``split``, under ``condition`` (None: the job's
    ``condition`` wildcard)."""

    def caches(wildcards):
        chosen = condition or wildcards.condition
        return list(paths.experiment_features(PARAMS, wildcards.experiment, split, chosen).values())

    return caches


def features_flags(split, condition=None):
    """``--features MODALITY=PATH`` for each cache of ``features_input(split, condition)``."""

    def flags(wildcards):
        chosen = condition or wildcards.condition
        caches = paths.experiment_features(PARAMS, wildcards.experiment, split, chosen)
        return " ".join(f"--features {m}={shlex.quote(path)}" for m, path in caches.items())

    return flags


def noisy_features_input(wildcards):
    """The noisy training caches the experiment's augmentation reads (none without noise)."""
    return list(paths.noisy_train_features(PARAMS, wildcards.experiment).values())


def noisy_features_flags(wildcards):
    caches = paths.noisy_train_features(PARAMS, wildcards.experiment)
    return " ".join(f"--noisy-features {m}={shlex.quote(path)}" for m, path in caches.items())


def warm_start_input(wildcards):
    """The checkpoints train.warm_start starts the experiment from, in its order."""
    return [paths.checkpoint_dir(e) for e in warm_start_sources(PARAMS, parse_name(wildcards.experiment))]


def warm_start_flags(wildcards, input):
    return " ".join(f"--warm-start {shlex.quote(path)}" for path in input.warm_start)


def branch_input(wildcards):
    """The baseline checkpoint a decorr run continues from (decorr.branch_at), or none."""
    baseline = branch_source(PARAMS, parse_name(wildcards.experiment))
    return [] if baseline is None else [paths.checkpoint_dir(baseline)]


def branch_flag(wildcards, input):
    return " ".join(f"--branch-from {shlex.quote(path)}" for path in input.branch)


def resume_path(wildcards):
    return paths.resume_dir(wildcards.experiment)


def checkpoint_input(wildcards):
    """The checkpoint the experiment decodes (ACT decodes its baseline's)."""
    return paths.checkpoint_dir(EXPERIMENTS[wildcards.experiment])


def analysis_folder(wildcards, output):
    return str(Path(output.metrics).parent)


def per_attempt(amount):
    """A resource that grows with each retry (SLURM's --retries): ``amount`` x the attempt."""

    def scaled(wildcards, attempt):
        return amount * attempt

    return scaled


def act_heads_input(wildcards):
    """ACT decodes with the heads its search kept; other methods read no head file."""
    experiment = EXPERIMENTS[wildcards.experiment]
    return [paths.act_heads_json(experiment)] if experiment.method == "act" else []


def act_heads_arg(wildcards):
    return " ".join(f"--act-heads {shlex.quote(path)}" for path in act_heads_input(wildcards))


def llm_input():
    return local_or_built(PARAMS["llm"]["path"], PARAMS["llm"]["source"] == "bundled")


def input_path(name, fallback):
    """The named input's path, or ``fallback`` when that input is not declared (a user-provided folder
    that does not exist yet: the job then fails with a message that says what to put there)."""

    def resolve(wildcards, input):
        value = getattr(input, name)
        return str(value) if value else fallback

    return resolve


def settings_trigger(settings):
    """A rule's ``trigger`` param: the settings that, when changed, must rerun it (as sorted JSON)."""
    return json.dumps(settings, sort_keys=True)


def train_trigger(wildcards):
    return settings_trigger(resolve_run(PARAMS, parse_name(wildcards.experiment)).train_record())


def eval_trigger(wildcards):
    return settings_trigger(resolve_run(PARAMS, parse_name(wildcards.experiment)).eval_record())


def analysis_trigger(wildcards):
    record = resolve_run(PARAMS, parse_name(wildcards.experiment)).eval_record()
    return settings_trigger({**record, "analysis": PARAMS["analysis"]})


def corpus_check_trigger():
    """The settings that decide what the corpus check accepts: a change reruns it."""
    corpus = PARAMS["corpus"]
    return settings_trigger(
        {
            "on_bad_sample": corpus["on_bad_sample"],
            "av_tolerance_s": corpus["av_tolerance_s"],
            "window_seconds": PARAMS["audio_encoder"]["window_seconds"],
        }
    )
