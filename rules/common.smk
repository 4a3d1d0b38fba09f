# Configuration and input functions: the only Python of the workflow.
import json
import os
import re
import shlex
from pathlib import Path

from snakemake.utils import validate

from avsr_sinks import pipeline
from avsr_sinks.config import SCHEMA_PATH, load_params
from avsr_sinks.records import eval_record, train_record, warm_start_sources
from avsr_sinks.grid import build_grid, parse_name

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
CORPUS_ROOT = pipeline.corpus_root(PARAMS)


wildcard_constraints:
    split="train|val|test",
    condition="|".join(
        re.escape(c)
        for c in sorted({"clean", *PARAMS["evaluate"]["conditions"], pipeline.train_noise_condition(PARAMS)} - {None})
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


def feature_args(experiment, split, condition):
    """``--features MODALITY=PATH`` for each cache the experiment reads."""
    caches = pipeline.experiment_features(PARAMS, experiment, split, condition)
    return " ".join(f"--features {m}={shlex.quote(path)}" for m, path in caches.items())


def noisy_feature_args(experiment):
    """``--noisy-features MODALITY=PATH`` for each noisy training cache the experiment's augmentation reads."""
    caches = pipeline.noisy_train_features(PARAMS, experiment)
    return " ".join(f"--noisy-features {m}={shlex.quote(path)}" for m, path in caches.items())


def act_heads_input(wildcards):
    """ACT decodes with the heads its search kept; other methods read no head file."""
    experiment = EXPERIMENTS[wildcards.experiment]
    return [pipeline.act_heads_json(experiment)] if experiment.method == "act" else []


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


def train_trigger(wildcards):
    return json.dumps(train_record(PARAMS, parse_name(wildcards.experiment)), sort_keys=True)


def eval_trigger(wildcards):
    return json.dumps(eval_record(PARAMS, parse_name(wildcards.experiment)), sort_keys=True)


def corpus_check_trigger():
    """The settings that decide what the corpus check accepts: a change reruns it."""
    corpus = PARAMS["corpus"]
    return json.dumps(
        {
            "on_bad_sample": corpus["on_bad_sample"],
            "av_tolerance_s": corpus["av_tolerance_s"],
            "window_seconds": PARAMS["audio_encoder"]["window_seconds"],
        },
        sort_keys=True,
    )
