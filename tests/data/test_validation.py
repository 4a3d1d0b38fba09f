"""The corpus validation layer, check by check (the stages and the checker on damaged corpora are in
tests/reliability/test_bad_corpus.py)."""

from __future__ import annotations

import csv
import json
import string
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from avsr_sinks.data import media
from avsr_sinks.data.manifest import DataError, SplitError, labels_path
from avsr_sinks.data.validation import (
    CorpusRules,
    check_split,
    check_transcripts,
    finish_split,
    invisible_character,
    read_skip_report,
    read_usable,
    tokenizer_pass,
    write_skip_report,
    write_usable,
)
from avsr_sinks.modeling.llm import load_tokenizer
from tests.data.conftest import DATASET, moving_square


def replace_label(root: Path, split: str, row: int, transcript: str | None = None, frames: int | None = None):
    """Change one field of data row ``row`` (0-based, after the header) of a split's label file."""
    path = labels_path(root, split)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if transcript is not None:
        rows[1 + row][4] = transcript
    if frames is not None:
        rows[1 + row][2] = str(frames)
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


def write_vfr_video(path: Path, frames: np.ndarray) -> None:
    """H.264 mp4 whose frames alternate 20 ms and 60 ms apart (a variable frame rate averaging 25 fps)."""
    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="gray").reformat(format="yuv420p")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            pts += 20 if i % 2 == 0 else 60
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.fixture(scope="session")
def unknown_char_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An LLM folder whose tokenizer covers ASCII only and maps anything else to [UNK] (a character BPE
    without byte fallback, as some sentencepiece tokenizers are)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = ["[UNK]", *string.ascii_letters, *string.digits, *string.punctuation]
    model = models.BPE({c: i for i, c in enumerate(chars)}, [], unk_token="[UNK]")
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    folder = tmp_path_factory.mktemp("ascii-llm")
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]").save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return folder


def test_video_timing_reads_the_rate_and_finds_a_variable_one(tmp_path: Path) -> None:
    for fps in (25, 30):
        media.write_video(tmp_path / f"{fps}.mp4", moving_square(20), fps=fps)
        timing = media.video_timing(tmp_path / f"{fps}.mp4")
        assert timing.fps == pytest.approx(fps) and timing.constant
    write_vfr_video(tmp_path / "vfr.mp4", moving_square(20))
    timing = media.video_timing(tmp_path / "vfr.mp4")
    assert not timing.constant
    assert (timing.min_interval_s, timing.max_interval_s) == pytest.approx((0.02, 0.06))


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("HELLO WORLD", None),
        ("CAFÉ AU LAIT 2", None),
        ("\u200b", "U+200B"),
        ("\ufeff", "U+FEFF"),
        ("HELLO\x00", "U+0000"),
        ("SOFT\u00adHYPHEN", "U+00AD"),
        ("...", "no letter or digit"),
    ],
)
def test_invisible_characters_are_named(text: str, found: str | None) -> None:
    reason = invisible_character(text)
    assert reason is None if found is None else found in reason


def test_a_clean_corpus_passes_whole_and_round_trips_through_the_usable_list(
    corpus: Path, tmp_path: Path
) -> None:
    check = check_split(corpus, "train", CorpusRules())
    assert check.rows == 4 and len(check.usable) == 4 and not check.problems
    write_usable(tmp_path / "train.csv", check.usable)
    assert read_usable(tmp_path / "train.csv", corpus) == check.usable


def test_error_mode_raises_label_problems_before_decoding_any_media(corpus: Path) -> None:
    (corpus / DATASET / "train/spk0/train_000.wav").write_bytes(b"not audio")  # row 1: a media problem
    replace_label(corpus, "train", 3, transcript="\u200b")  # row 4: a label problem
    with pytest.raises(DataError, match=r"train\.csv, line 5: .*U\+200B"):
        check_split(corpus, "train", CorpusRules())
    both = check_split(corpus, "train", CorpusRules(), collect_all=True)
    assert [e.label_line for e in both.problems] == [2, 5] and len(both.usable) == 2


def test_an_utterance_in_two_splits_is_refused_in_the_earlier_one(corpus: Path) -> None:
    row = labels_path(corpus, "val").read_text().splitlines()[1]
    with labels_path(corpus, "train").open("a") as fh:
        fh.write(row + "\n")
    with pytest.raises(DataError, match=r"train\.csv, line 6: utterance tiny/val/spk4/val_000: is also in"):
        check_split(corpus, "train", CorpusRules())
    assert not check_split(corpus, "val", CorpusRules()).problems  # the later split keeps it


def test_skip_mode_drops_only_the_bad_sample_and_an_empty_split_always_stops(corpus: Path) -> None:
    (corpus / DATASET / "train/spk1/train_001.wav").write_bytes(b"not audio")
    check = check_split(corpus, "train", CorpusRules(on_bad_sample="skip"))
    assert [u.uid for u in check.usable] == [f"tiny/train/spk{i}/train_{i:03d}" for i in (0, 2, 3)]
    assert [(e.uid, e.label_line) for e in check.problems] == [("tiny/train/spk1/train_001", 3)]
    labels_path(corpus, "val").write_text(
        "dataset,relative_path,length_in_video_frames,token_ids,transcript\n"
    )
    with pytest.raises(SplitError, match=r"val\.csv: holds no utterance"):
        check_split(corpus, "val", CorpusRules(on_bad_sample="skip"))


def test_audio_longer_than_the_encoder_window_is_refused_with_the_key(corpus: Path) -> None:
    rules = CorpusRules(audio_window_s=1.0)  # the train clips last 0.8 to 1.2 s
    with pytest.raises(DataError, match=r"train_002\.wav: .*lasts 1\.20 s, .*audio_encoder\.window_seconds"):
        check_split(corpus, "train", rules)
    assert len(check_split(corpus, "train", CorpusRules(audio_window_s=1.2)).usable) == 4


def test_the_tokenizer_pass_refuses_what_becomes_unknown(corpus: Path, unknown_char_llm: Path) -> None:
    replace_label(corpus, "test", 1, transcript="HELLO 世界")
    utterances = check_split(corpus, "test", CorpusRules()).usable
    tokenize, unknown = tokenizer_pass(load_tokenizer(unknown_char_llm))
    with pytest.raises(DataError, match=r"test\.csv, line 3: .*\('世界' would become its unknown token\)"):
        check_transcripts(utterances, tokenize, unknown, CorpusRules(), corpus, "test")
    skipped = check_transcripts(utterances, tokenize, unknown, CorpusRules("skip"), corpus, "test")
    assert len(skipped.usable) == 2 and skipped.problems[0].uid == "tiny/test/spk8/test_001"


def test_the_split_report_merges_both_passes_in_label_order(corpus: Path, tmp_path: Path) -> None:
    (corpus / DATASET / "train/spk0/train_000.wav").write_bytes(b"not audio")  # row 2, before the text one
    media_check = check_split(corpus, "train", CorpusRules("skip"))
    write_skip_report(tmp_path / "media-skipped.csv", media_check.problems)
    flag_again = lambda text: [5] if "AGAIN" in text else [1]  # noqa: E731 (5: the unknown token)
    text = check_transcripts(media_check.usable, flag_again, 5, CorpusRules("skip"), corpus, "train")
    card = finish_split(
        text, tmp_path / "media-skipped.csv", tmp_path / "u.csv", tmp_path / "s.csv", tmp_path / "c.json"
    )
    report = read_skip_report(tmp_path / "s.csv")
    assert [e.label_line for e in report] == [2, 4] and Path(report[0].file).name == "train_000.wav"
    assert card == json.loads((tmp_path / "c.json").read_text())
    assert (card["rows"], card["usable"], card["skipped"]) == (4, 2, 2)
    assert len(read_usable(tmp_path / "u.csv", corpus)) == 2
