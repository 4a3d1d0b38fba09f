"""The stages that read a trained checkpoint, one entry each: the ACT head search, the evaluation and the
sink analysis. Each takes the experiment's run spec, the split's dataset and the loaded model, and writes
its outputs with the evaluation record beside the results."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from avsr_sinks.analysis.capture import collect, write_analysis
from avsr_sinks.analysis.thresholds import AnalysisThresholds
from avsr_sinks.data.noise import TEXT_ONLY
from avsr_sinks.decoding.act import ACT
from avsr_sinks.decoding.act_search import search_act_heads
from avsr_sinks.decoding.decode import decode_dataset, write_evaluation
from avsr_sinks.decoding.method import method_context
from avsr_sinks.features.store import FeatureDataset
from avsr_sinks.io import git_commit, write_json_atomic
from avsr_sinks.modeling.avsr_model import AVSRModel
from avsr_sinks.modeling.precision import cpu_bf16_autocast
from avsr_sinks.settings.spec import RunSpec


def search_heads_stage(
    spec: RunSpec, dataset: FeatureDataset, model: AVSRModel, out_json: Path
) -> dict[str, Any]:
    """ACT's head search for an ACT experiment's baseline checkpoint, on the validation split."""
    if spec.act is None:
        raise ValueError(f"{spec.experiment.name}: the head search is for ACT experiments only")
    result = search_act_heads(model, dataset, spec.act, spec.decode)
    write_json_atomic(out_json, {**spec.eval_record(), **result, "git_commit": git_commit()})
    return result


def evaluate_stage(
    spec: RunSpec,
    dataset: FeatureDataset,
    model: AVSRModel,
    condition: str,
    act_heads: Path | None,
    out_json: Path,
    out_csv: Path,
) -> dict[str, Any]:
    """Decode the test split under ``condition`` with the experiment's method and score it (WER)."""
    decode = spec.decode
    autocast = cpu_bf16_autocast(decode.autocast_bf16_on_cpu)
    with method_context(model, spec, act_heads) as heads:
        hyps = decode_dataset(
            model,
            dataset,
            decode.batch_size,
            decode.beam_size,
            decode.max_new_tokens,
            text_only=condition == TEXT_ONLY,
            autocast_bf16_on_cpu=autocast,
        )
    record = {
        **spec.eval_record(),
        **({"act_heads": heads} if heads is not None else {}),
        "condition": condition,
        "cpu_bf16_autocast": autocast,  # what decode.autocast_bf16_on_cpu came to on this machine
        "git_commit": git_commit(),
    }
    return write_evaluation(hyps, out_json, out_csv, record)


def analyze_stage(
    spec: RunSpec,
    dataset: FeatureDataset,
    model: AVSRModel,
    settings: Mapping[str, Any],
    act_heads: Path | None,
    out_dir: Path,
) -> dict[str, Any]:
    """Sinks, massive activations and BOS cosines of the model under its method (params' ``analysis``
    settings), teacher-forced on the split's first utterances; returns the arrays behind the figures."""
    items = [dataset[i] for i in range(min(settings["utterances"], len(dataset)))]
    with method_context(model, spec, act_heads) as heads:
        captured = collect(
            model, [i[1] for i in items], [i[2] for i in items], attention_functions=("eager", ACT)
        )
    metrics, arrays = captured.analyze(AnalysisThresholds.from_settings(settings))
    record = {
        **spec.eval_record(),
        **({"act_heads": heads} if heads is not None else {}),
        "analysis": dict(settings),
        "uids": [i[0] for i in items],
    }
    write_analysis(out_dir, {**record, **metrics}, arrays)
    return arrays
