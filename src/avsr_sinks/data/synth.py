"""Synthetic audio-visual speech corpus in the Llama-AVSR / auto_avsr label layout.

Layout under ``out_dir``: ``labels/{train,val,test}.csv``, ``synth/<split>/<spk>/<utt>.{mp4,wav,json}``,
``vocab.txt``, ``speakers.json`` and ``generation.json``. Each utterance is a pure function of
(cfg.seed, split, index), so the output does not depend on the number of workers.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.metadata
import io
import json
import logging
import math
import multiprocessing as mp
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from avsr_sinks.data import speech, text, visemes
from avsr_sinks.io import atomic_path, git_commit, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

DATASET = "synth"
SPLITS = ("train", "val", "test")
HEADER = ["dataset", "relative_path", "length_in_video_frames", "token_ids", "transcript"]
# One thread (workers give the parallelism) and x264's plain C code: with its SIMD routines about one
# encode in ten of the same frames decodes ~1 gray level differently (measured: 73 of 80 videos identical
# over three encodes; 80 of 80 with asm=0, at 3.4x the encoding time), so a rerun made other features.
_X264 = {
    "preset": "veryfast",
    "crf": "20",
    "threads": "1",
    "x264-params": "asm=0",
}


@dataclass(frozen=True)
class SynthConfig:
    """What to generate; every field is recorded in generation.json."""

    seed: int = 0
    n_train: int = 3000
    n_val: int = 300
    n_test: int = 300
    n_speakers: int = 8
    min_words: int = 3
    max_words: int = 12
    vocab_size: int = 1000

    def __post_init__(self) -> None:
        limits = {
            "seed": (0, 2**32 - 1),
            "n_train": (1, 1_000_000),
            "n_val": (1, 100_000),
            "n_test": (1, 100_000),
            "n_speakers": (1, 100),
            "min_words": (2, 12),
            "max_words": (max(self.min_words, 3), 20),
            "vocab_size": (text.MIN_VOCAB, text.LEXICON_SIZE),
        }
        for name, (lo, hi) in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(
                    f"SynthConfig.{name}={value!r} is invalid: must be an integer in [{lo}, {hi}]"
                )

    def counts(self) -> dict[str, int]:
        return {"train": self.n_train, "val": self.n_val, "test": self.n_test}


def _write_wav(path: Path, audio: np.ndarray) -> None:
    with av.open(str(path), "w", format="wav", options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream("pcm_s16le", rate=speech.SAMPLE_RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(audio[None, :], format="s16", layout="mono")
        frame.sample_rate = speech.SAMPLE_RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)


def _write_mp4(path: Path, frames: np.ndarray) -> None:
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=visemes.FPS, options=_X264)
        stream.width = stream.height = visemes.SIZE
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        # Explicit yuv420p planes (neutral chroma) and timestamps: the file is a function of the frames.
        planes = np.full((visemes.SIZE * 3 // 2, visemes.SIZE), 128, np.uint8)
        for i, img in enumerate(frames):
            planes[: visemes.SIZE] = img
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def av_correlation(frames: np.ndarray, face: visemes.Face, audio: np.ndarray) -> float:
    """Pearson r between the mouth opening measured from pixels and the 25 fps RMS audio envelope."""
    hop = speech.SAMPLE_RATE // visemes.FPS
    n = len(frames)
    x = np.zeros(n * hop)
    x[: min(len(audio), n * hop)] = audio[: n * hop]
    energy = np.sqrt((x.reshape(n, hop) ** 2).mean(1))
    opening = visemes.measured_opening(frames, visemes.mouth_roi(face))
    if opening.std() == 0 or energy.std() == 0:
        return float("nan")
    return float(np.corrcoef(opening, energy)[0, 1])


def _make_utterance(job: dict[str, Any]) -> dict[str, Any]:
    """Synthesise, render and write one utterance; return its row and statistics."""
    spk: speech.Speaker = job["speaker"]
    utt = speech.synthesize(job["transcript"], spk)
    n_frames = math.ceil(utt.duration * visemes.FPS - 1e-9)
    params, ids = visemes.articulate(utt.phonemes, n_frames)
    rng = np.random.default_rng([job["seed"], text.SPLIT_CODES[job["split"]], job["index"], 2])
    frames = visemes.render(params, job["face"], rng)
    stem = Path(job["root"]) / job["relative_path"]
    _write_wav(stem.with_suffix(".wav"), utt.audio)
    _write_mp4(stem, frames)
    corr = av_correlation(frames, job["face"], utt.audio)
    meta = {
        "utterance": stem.stem,
        "speaker": spk.speaker_id,
        "transcript": job["transcript"],
        "duration": utt.duration,
        "n_frames": n_frames,
        "fps": visemes.FPS,
        "sample_rate": speech.SAMPLE_RATE,
        "words": [{"word": w, "start": a, "end": b} for w, a, b in utt.words],
        "phonemes": [{"symbol": s, "start": a, "end": b} for s, a, b in utt.phonemes],
        "frame_visemes": ids.tolist(),
        "frame_opening": np.round(params[:, 0], 4).tolist(),
        "av_correlation": None if math.isnan(corr) else round(corr, 4),
    }
    stem.with_suffix(".json").write_text(json.dumps(meta) + "\n", encoding="utf-8")
    return {
        "split": job["split"],
        "index": job["index"],
        "n_frames": n_frames,
        "duration": utt.duration,
        "speaker": spk.speaker_id,
        "corr": corr,
        "relative_path": job["relative_path"],
        "transcript": job["transcript"],
    }


def _versions() -> dict[str, str]:
    return {
        "av": av.__version__,
        "numpy": np.__version__,
        "espeakng_loader": importlib.metadata.version("espeakng-loader"),
        "libespeak-ng": speech.espeak_version(),
        "ffmpeg": ".".join(str(v) for v in av.library_versions.get("libavcodec", ())),
        "python": platform.python_version(),
    }


def generate_corpus(cfg: SynthConfig, out_dir: Path, workers: int = 1) -> dict[str, Any]:
    """Write the whole corpus to ``out_dir`` (atomically: all or nothing) and return its statistics."""
    out_dir = Path(out_dir)
    sentences = text.split_sentences(cfg.seed, cfg.counts(), cfg.vocab_size, cfg.min_words, cfg.max_words)
    lex = text.Lexicon(cfg.vocab_size)
    vocab = lex.words()
    word_id = {w: i for i, w in enumerate(vocab)}
    speakers = speech.make_speakers(cfg.seed, cfg.n_speakers)
    faces = [visemes.make_face(cfg.seed, k) for k in range(cfg.n_speakers)]
    jobs = []
    offset = 0  # round-robin over one global counter so that small splits still cover many speakers
    for split in SPLITS:
        for i, sent in enumerate(sentences[split]):
            k = (offset + i) % cfg.n_speakers
            rel = f"{split}/{speakers[k].speaker_id}/{split}_{i:06d}.mp4"
            jobs.append(
                {
                    "split": split,
                    "index": i,
                    "transcript": sent,
                    "speaker": speakers[k],
                    "face": faces[k],
                    "relative_path": rel,
                    "seed": cfg.seed,
                }
            )
        offset += len(sentences[split])
    with atomic_path(out_dir) as tmp:
        media = tmp / DATASET
        for job in jobs:
            job["root"] = str(media)
        for rel in {str(Path(j["relative_path"]).parent) for j in jobs}:
            (media / rel).mkdir(parents=True, exist_ok=True)
        results = _run(jobs, workers)
        (tmp / "labels").mkdir()
        for split in SPLITS:
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(HEADER)
            for r in (r for r in results if r["split"] == split):
                ids = " ".join(str(word_id[w]) for w in r["transcript"].split())
                writer.writerow([DATASET, r["relative_path"], r["n_frames"], ids, r["transcript"]])
            (tmp / "labels" / f"{split}.csv").write_text(buf.getvalue(), encoding="utf-8")
        (tmp / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        table = [
            {**s, "face": f}
            for s, f in zip(speech.speaker_table(speakers), visemes.face_table(faces), strict=True)
        ]
        (tmp / "speakers.json").write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
        generation = {
            "config": dataclasses.asdict(cfg),
            "versions": _versions(),
            "git_commit": git_commit(),
            "visemes": visemes.VISEMES,
            "fps": visemes.FPS,
            "sample_rate": speech.SAMPLE_RATE,
            "frame_size": visemes.SIZE,
            "x264": _X264,
        }
        (tmp / "generation.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
        stats = corpus_stats(cfg, results, vocab)
    log.info("wrote %d utterances to %s", len(results), out_dir)
    return stats


def _run(jobs: list[dict[str, Any]], workers: int) -> list[dict[str, Any]]:
    if workers <= 1:
        speech.init_engine()
        return [_make_utterance(j) for j in jobs]
    # spawn: a clean interpreter per worker, and eSpeak initialised exactly once in each
    with mp.get_context("spawn").Pool(workers, initializer=speech.init_engine) as pool:
        return list(pool.imap(_make_utterance, jobs, chunksize=max(1, min(16, len(jobs) // (8 * workers)))))


def _summary(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {
        "mean": round(float(arr.mean()), 3),
        "min": round(float(arr.min()), 3),
        "max": round(float(arr.max()), 3),
    }


def corpus_stats(cfg: SynthConfig, results: list[dict[str, Any]], vocab: list[str]) -> dict[str, Any]:
    """Statistics for the corpus card from the per-utterance results."""
    splits: dict[str, Any] = {}
    for split in [*SPLITS, "total"]:
        rs = [r for r in results if split == "total" or r["split"] == split]
        durs = [r["duration"] for r in rs]
        words = [r["transcript"].split() for r in rs]
        splits[split] = {
            "utterances": len(rs),
            "hours": round(sum(durs) / 3600, 4),
            "duration_s": _summary(durs),
            "words_per_utterance": _summary([len(w) for w in words]),
            "distinct_words": len({w for ws in words for w in ws}),
            "speakers": len({r["speaker"] for r in rs}),
        }
    durs = np.array([r["duration"] for r in results])
    edges = np.arange(0.0, math.ceil(durs.max()) + 0.5, 0.5)
    counts, _ = np.histogram(durs, bins=edges)
    corr = np.array([r["corr"] for r in results], dtype=float)
    corr = corr[~np.isnan(corr)]
    return {
        "dataset": DATASET,
        "config": dataclasses.asdict(cfg),
        "splits": splits,
        "speakers": cfg.n_speakers,
        "vocab_file_words": len(vocab),
        "skipped": 0,
        "duration_histogram": {"bin_edges_s": edges.round(2).tolist(), "counts": counts.tolist()},
        "av_alignment": {
            "median_pearson_r": round(float(np.median(corr)), 4),
            "p10": round(float(np.percentile(corr, 10)), 4),
            "p90": round(float(np.percentile(corr, 90)), 4),
            "n": int(corr.size),
            "method": "Pearson r per utterance between dark-pixel area in the mouth box of each rendered "
            "frame and the RMS audio energy in the matching 40 ms window (25 fps)",
        },
    }


def write_corpus_card(stats: dict[str, Any], md_path: str | Path, json_path: str | Path) -> None:
    """Write the corpus card as markdown (tables) and JSON (the same statistics)."""
    s = stats["splits"]
    lines = [
        f"# Corpus card: {stats['dataset']} (synthetic audio-visual speech)",
        "",
        "eSpeak NG speech (16 kHz mono) with 96x96 grayscale 25 fps mouth video rendered from the same "
        "phoneme timeline through a many-to-one viseme model.",
        "",
        "| split | utterances | hours | mean dur (s) | min | max | words/utt (mean, min-max) "
        "| distinct words | speakers |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in s.items():
        d, w = v["duration_s"], v["words_per_utterance"]
        lines.append(
            f"| {name} | {v['utterances']} | {v['hours']:.3f} | {d['mean']:.2f} | {d['min']:.2f} | "
            f"{d['max']:.2f} | {w['mean']:.1f} ({w['min']:.0f}-{w['max']:.0f}) | {v['distinct_words']} | "
            f"{v['speakers']} |"
        )
    h = stats["duration_histogram"]
    lines += ["", "## Duration histogram", "", "| duration (s) | utterances |", "|---|---|"]
    edges = h["bin_edges_s"]
    lines += [f"| {a:.1f}-{b:.1f} | {c} |" for a, b, c in zip(edges, edges[1:], h["counts"], strict=False)]
    a = stats["av_alignment"]
    lines += [
        "",
        "## Other facts",
        "",
        f"- Speakers: {stats['speakers']}; vocabulary file: {stats['vocab_file_words']} words "
        f"(lexicon entries sampled: {stats['config']['vocab_size']}).",
        f"- Skipped samples: {stats['skipped']}.",
        f"- Audio-video alignment: median Pearson r = {a['median_pearson_r']:.3f} "
        f"(p10 {a['p10']:.3f}, p90 {a['p90']:.3f}, n = {a['n']}); {a['method']}.",
        f"- Generation config: `{json.dumps(stats['config'], sort_keys=True)}`.",
        "",
    ]
    write_text_atomic(md_path, "\n".join(lines))
    write_json_atomic(json_path, stats)
