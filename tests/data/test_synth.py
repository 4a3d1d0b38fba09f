"""Fast tests of the synthetic audio-visual corpus (tiny corpora, a few seconds in all)."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from avsr_sinks.data import speech, synth, text, visemes
from avsr_sinks.data.synth import SynthConfig, generate_corpus, write_corpus_card

TINY = SynthConfig(seed=3, n_train=6, n_val=2, n_test=2)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny corpus twice (inline), once with two worker processes, and once with another seed."""
    root = tmp_path_factory.mktemp("synth")
    out = {"a": root / "a", "b": root / "b", "par": root / "par", "other": root / "other"}
    generate_corpus(TINY, out["a"], workers=1)
    generate_corpus(TINY, out["b"], workers=1)
    generate_corpus(TINY, out["par"], workers=2)
    generate_corpus(SynthConfig(seed=4, n_train=6, n_val=2, n_test=2), out["other"], workers=1)
    return out


def _rows(root: Path, split: str) -> list[dict[str, str]]:
    with open(root / "labels" / f"{split}.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _all_rows(root: Path) -> list[dict[str, str]]:
    return [r for split in synth.SPLITS for r in _rows(root, split)]


def _wav_samples(path: Path) -> tuple[np.ndarray, int, int]:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16), w.getframerate(), w.getnchannels()


def test_same_seed_is_identical_and_worker_count_does_not_matter(corpora: dict[str, Path]) -> None:
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    reference = files(corpora["a"])
    assert any(name.endswith(".mp4") for name in reference)
    for other in ("b", "par"):
        produced = files(corpora[other])
        assert produced.keys() == reference.keys()
        differing = [name for name in reference if produced[name] != reference[name]]
        assert not differing, f"corpus {other!r} differs from 'a' in {len(differing)} files: {differing[:5]}"


def test_render_is_deterministic() -> None:
    params, _ = visemes.articulate([("m", 0.1, 0.2), ("'a", 0.2, 0.4), ("p", 0.4, 0.5)], 16)
    face = visemes.make_face(0, 1)
    a, b = (visemes.render(params, face, np.random.default_rng([0, 1])) for _ in range(2))
    np.testing.assert_array_equal(a, b)


def test_different_seed_differs(corpora: dict[str, Path]) -> None:
    assert (corpora["a"] / "labels/train.csv").read_bytes() != (
        corpora["other"] / "labels/train.csv"
    ).read_bytes()


def test_splits_are_disjoint(corpora: dict[str, Path]) -> None:
    sets = {s: {r["transcript"] for r in _rows(corpora["a"], s)} for s in synth.SPLITS}
    assert (
        not sets["train"] & sets["val"]
        and not sets["train"] & sets["test"]
        and not sets["val"] & sets["test"]
    )


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)])


def test_csv_format_media_and_vocab(corpora: dict[str, Path]) -> None:
    root = corpora["a"]
    vocab = (root / "vocab.txt").read_text().splitlines()
    for split in synth.SPLITS:
        with open(root / "labels" / f"{split}.csv", newline="") as fh:
            assert next(csv.reader(fh)) == synth.HEADER
        for row in _rows(root, split):
            assert row["dataset"] == "synth"
            assert re.fullmatch(rf"{split}/spk\d\d/{split}_\d{{6}}\.mp4", row["relative_path"])
            assert re.fullmatch(r"[a-z' ]+", row["transcript"])
            assert [vocab[int(i)] for i in row["token_ids"].split()] == row["transcript"].split()
            n = int(row["length_in_video_frames"])
            frames = _decode(root / "synth" / row["relative_path"])
            assert frames.shape == (n, 96, 96)
            samples, rate, channels = _wav_samples(
                root / "synth" / Path(row["relative_path"]).with_suffix(".wav")
            )
            assert (rate, channels) == (16000, 1)
            assert abs(len(samples) / rate - n / 25) <= 1 / 25
    gen = json.loads((root / "generation.json").read_text())
    assert gen["config"]["seed"] == TINY.seed and gen["versions"]["libespeak-ng"].startswith("1.")


def test_speakers_and_timings(corpora: dict[str, Path]) -> None:
    root = corpora["a"]
    rows = _all_rows(root)
    assert len({Path(r["relative_path"]).parent.name for r in rows}) >= TINY.n_speakers
    assert len(json.loads((root / "speakers.json").read_text())) == TINY.n_speakers
    for row in rows:
        meta = json.loads((root / "synth" / Path(row["relative_path"]).with_suffix(".json")).read_text())
        assert meta["words"] and [w["word"] for w in meta["words"]] == row["transcript"].split()
        for key in ("words", "phonemes"):
            times = [t for item in meta[key] for t in (item["start"], item["end"])]
            assert times == sorted(times) and times[0] >= 0 and times[-1] <= meta["duration"]
        n = int(row["length_in_video_frames"])
        assert n == math.ceil(meta["duration"] * 25 - 1e-9)
        assert len(meta["frame_visemes"]) == len(meta["frame_opening"]) == n
        assert meta["speaker"] == Path(row["relative_path"]).parent.name


def test_viseme_ambiguity() -> None:
    assert visemes.visemes_of("p") == visemes.visemes_of("b") == visemes.visemes_of("m")
    assert visemes.visemes_of("f") == visemes.visemes_of("v")
    assert len({visemes.visemes_of(s) for s in ["t", "d", "n", "l", "s", "z", "k", "g"]}) == 1
    assert visemes.visemes_of("p") != visemes.visemes_of("f") != visemes.visemes_of("'a")


@pytest.mark.parametrize(
    ("field", "value"),
    [("n_train", 0), ("n_speakers", 0), ("min_words", 1), ("max_words", 2), ("vocab_size", 10), ("seed", -1)],
)
def test_config_validation_names_the_field(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=rf"{field}={value}"):
        SynthConfig(**{field: value})
    with pytest.raises(ValueError, match="n_val"):
        SynthConfig(n_val=1.5)  # type: ignore[arg-type]


def test_failure_midway_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = speech.synthesize
    calls = {"n": 0}

    def flaky(sentence: str, spk: speech.Speaker) -> speech.Utterance:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("synthetic failure")
        return real(sentence, spk)

    monkeypatch.setattr(speech, "synthesize", flaky)
    with pytest.raises(RuntimeError, match="synthetic failure"):
        generate_corpus(TINY, tmp_path / "corpus", workers=1)
    assert list(tmp_path.iterdir()) == []


def test_corpus_card_and_cli(tmp_path: Path) -> None:
    overlay = tmp_path / "tiny.yaml"
    overlay.write_text("corpus:\n  synth:\n    n_train: 4\n    n_val: 1\n    n_test: 1\n    seed: 5\n")
    script = Path(__file__).resolve().parents[2] / "workflow_scripts" / "make_corpus.py"
    params = str(Path(__file__).resolve().parents[2] / "params.yaml")
    args = [sys.executable, str(script), "--params", params, str(overlay), "--out-dir", str(tmp_path / "c")]
    args += [
        "--card-md",
        str(tmp_path / "card.md"),
        "--card-json",
        str(tmp_path / "card.json"),
        "--workers",
        "1",
    ]
    subprocess.run(args, check=True, capture_output=True)
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["splits"]["total"]["utterances"] == 6 and card["skipped"] == 0
    assert sum(card["duration_histogram"]["counts"]) == 6
    assert -1 <= card["av_alignment"]["median_pearson_r"] <= 1
    assert "Duration histogram" in (tmp_path / "card.md").read_text()
    overlay.write_text("corpus:\n  synth:\n    n_train: 0\n")
    bad = subprocess.run([*args[:4], str(overlay), *args[5:]], capture_output=True, text=True)
    assert bad.returncode != 0 and "corpus.synth.n_train" in bad.stderr
    write_corpus_card(card, tmp_path / "again.md", tmp_path / "again.json")


def test_sentences_are_well_formed() -> None:
    lex = text.Lexicon(1000)
    assert text.LEXICON_SIZE >= 1000 and len(lex.entries) + len(text.FUNCTION_WORDS) == 1000
    vocab = set(lex.words())
    rng = np.random.default_rng(0)
    for _ in range(300):
        words = text.make_sentence(lex, rng, 3, 12).split()
        assert 3 <= len(words) <= 12 and set(words) <= vocab
