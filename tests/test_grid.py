import pytest

from avsr_sinks.settings.config import load_params
from avsr_sinks.settings.grid import Experiment, build_grid, parse_name
from tests.conftest import REPO


def test_default_grid_names() -> None:
    names = [e.name for e in build_grid(load_params([REPO / "params.yaml"]))]
    settings = ["asr-a4", "asr-a16", "vsr-v5", "avsr-a4v5"]
    assert names == [f"{s}-{m}-s0" for s in settings for m in ("act", "baseline", "decorr")]


def test_grid_expands_methods_and_seeds() -> None:
    params = {
        "grid": {
            "asr_audio_rates": [4, 32],
            "vsr_video_rates": [2],
            "avsr_rates": [[4, 2]],
            "methods": ["baseline"],
            "seeds": [0, 1, 2],
        }
    }
    grid = build_grid(params)
    assert len(grid) == 12 and len({e.name for e in grid}) == 12


@pytest.mark.parametrize(
    "name", ["asr-a4-baseline-s0", "asr-a32-baseline-s3", "vsr-v2-baseline-s0", "avsr-a16v5-baseline-s1"]
)
def test_name_round_trip(name: str) -> None:
    assert parse_name(name).name == name


@pytest.mark.parametrize(
    "name", ["asr-4-baseline-s0", "asr-a4-baseline", "xyz", "asr-a4v2-baseline-s0", "vsr-a4-baseline-s0"]
)
def test_bad_names(name: str) -> None:
    with pytest.raises(ValueError):
        parse_name(name)


def test_task_needs_its_rates() -> None:
    with pytest.raises(ValueError, match="audio rate"):
        Experiment("asr", None, None, "baseline", 0)
    assert Experiment("asr", 4, None, "baseline", 0).modalities == ("audio",)
    assert Experiment("avsr", 4, 2, "baseline", 0).modalities == ("audio", "video")
    with pytest.raises(ValueError, match="video rate"):
        Experiment("avsr", 4, None, "baseline", 0)


def test_feature_sets_cover_the_grid_once() -> None:
    from avsr_sinks.workflow import paths

    params = load_params([REPO / "params.yaml"])
    sets = paths.feature_sets(params)
    assert len(sets) == len(set(sets))
    assert ("audio", "test", "babble0db") in sets and ("video", "test", "clean") in sets
    assert not any(m == "video" and c != "clean" for m, _, c in sets)
    assert not any(c == "text_only" for _, _, c in sets)
    vsr = paths.experiment_features(params, "vsr-v2-baseline-s0", "test", "babble0db")
    assert list(vsr) == ["video"] and vsr["video"].endswith("/test-clean")


def test_evaluation_conditions_skip_what_an_experiment_cannot_tell_apart() -> None:
    """Noise only where the experiment hears audio, the text-only floor only for the chosen methods; the
    targets of a whole run and dvc.yaml's condition axis both follow."""
    from avsr_sinks.workflow import paths

    params = load_params([REPO / "params.yaml"])
    params["evaluate"] |= {
        "conditions": ["clean", "babble0db", "text_only"],
        "text_only_methods": ["baseline"],
    }
    conditions = {e.name: paths.eval_conditions(params, e) for e in build_grid(params)}
    assert conditions["asr-a4-baseline-s0"] == ["clean", "babble0db", "text_only"]
    assert conditions["avsr-a4v5-decorr-s0"] == ["clean", "babble0db"]
    assert conditions["vsr-v5-baseline-s0"] == ["clean", "text_only"]
    assert conditions["vsr-v5-act-s0"] == ["clean"]
    targets = paths.eval_targets(params)
    assert len(targets) == sum(map(len, conditions.values())) == len(set(targets))
    from avsr_sinks.workflow.dvc_yaml import dvc_pipeline

    stages = dvc_pipeline(params)["stages"]
    assert stages["evaluate_vsr_act"]["matrix"]["condition"] == ["clean"]
    assert stages["evaluate_asr_baseline"]["matrix"]["condition"] == ["clean", "babble0db", "text_only"]
