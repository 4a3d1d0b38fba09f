"""Sentence generator for the synthetic corpus: a ranked lexicon plus a small phrase grammar.

Sentences are plausible, lower-case English without punctuation. Content words are drawn with
Zipf-Mandelbrot weights over their rank in the lexicon lists, so the corpus has a realistic
frequency profile; everything is a pure function of the seed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from avsr_sinks.data import lexicon

SPLIT_CODES = {"train": 1, "val": 2, "test": 3}
_ZIPF_OFFSET = 2.7  # Mandelbrot offset: flattens the head so the top word is not a third of all draws
_WORD_RE = re.compile(r"^[a-z']+$")


@dataclass(frozen=True)
class Entry:
    """One lexicon item: a lemma, its part of speech, inflection overrides and its rank in [0, 1)."""

    word: str
    pos: str
    forms: tuple[str, ...]
    rank: float
    uncountable: bool = False


def _parse(block: str, pos: str) -> list[Entry]:
    tokens = block.split()
    seen: set[str] = set()
    entries: list[Entry] = []
    for tok in tokens:
        uncountable = tok.endswith("*")
        tok = tok.rstrip("*")
        word, _, rest = tok.partition("=")
        if word in seen:
            continue
        seen.add(word)
        entries.append(Entry(word, pos, tuple(rest.split(",")) if rest else (), 0.0, uncountable))
    n = len(entries)
    return [Entry(e.word, e.pos, e.forms, i / n, e.uncountable) for i, e in enumerate(entries)]


_POS_BLOCKS = {
    "n_person": lexicon.NOUN_PERSON,
    "n_thing": lexicon.NOUN_THING,
    "n_place": lexicon.NOUN_PLACE,
    "n_abstract": lexicon.NOUN_ABSTRACT,
    "v_thing": lexicon.VERB_THING,
    "v_person": lexicon.VERB_PERSON,
    "v_abstract": lexicon.VERB_ABSTRACT,
    "v_intrans": lexicon.VERB_INTRANS,
    "adv": lexicon.ADVERB,
    "adj": lexicon.ADJECTIVE,
}
CONTENT: list[Entry] = [e for pos, block in _POS_BLOCKS.items() for e in _parse(block, pos)]
FUNCTION_WORDS: list[str] = list(dict.fromkeys(lexicon.FUNCTION.split()))
LEXICON_SIZE = len(CONTENT) + len(FUNCTION_WORDS)
MIN_VOCAB = len(FUNCTION_WORDS) + 150  # below this some grammar slots would be nearly empty


def _sibilant(w: str) -> bool:
    return w.endswith(("s", "x", "z", "ch", "sh"))


def plural(e: Entry) -> str:
    """Plural of a noun entry (override first, then the regular spelling rules)."""
    if e.forms:
        return e.forms[0]
    w = e.word
    if _sibilant(w):
        return w + "es"
    if w.endswith("y") and w[-2] not in "aeiou":
        return w[:-1] + "ies"
    return w + "s"


def past(e: Entry) -> str:
    """Simple past of a verb entry."""
    if e.forms:
        return e.forms[0]
    w = e.word
    if w.endswith("e"):
        return w + "d"
    if w.endswith("y") and w[-2] not in "aeiou":
        return w[:-1] + "ied"
    return w + "ed"


def gerund(e: Entry) -> str:
    """The -ing form of a verb entry."""
    if len(e.forms) > 1:
        return e.forms[1]
    w = e.word
    if w.endswith("e") and not w.endswith("ee"):
        return w[:-1] + "ing"
    return w + "ing"


def third(e: Entry) -> str:
    """Third-person singular present of a verb entry."""
    if len(e.forms) > 2:
        return e.forms[2]
    w = e.word
    if _sibilant(w) or w.endswith("o"):
        return w + "es"
    if w.endswith("y") and w[-2] not in "aeiou":
        return w[:-1] + "ies"
    return w + "s"


def _surface(e: Entry) -> list[str]:
    if e.pos.startswith("n_"):
        return [e.word] if e.uncountable else [e.word, plural(e)]
    if e.pos.startswith("v_"):
        return [e.word, past(e), gerund(e), third(e)]
    return [e.word]


class Lexicon:
    """The ``vocab_size`` most frequent lexicon entries, with cumulative sampling weights per slot."""

    def __init__(self, vocab_size: int) -> None:
        if not MIN_VOCAB <= vocab_size <= LEXICON_SIZE:
            raise ValueError(f"vocab_size={vocab_size} outside [{MIN_VOCAB}, {LEXICON_SIZE}]")
        # Interleave the lists by relative rank so trimming keeps every slot populated.
        keep = sorted(CONTENT, key=lambda e: (e.rank, e.pos))[: vocab_size - len(FUNCTION_WORDS)]
        self.pools: dict[str, tuple[list[Entry], np.ndarray]] = {}
        for pos in _POS_BLOCKS:
            items = sorted((e for e in keep if e.pos == pos), key=lambda e: e.rank)
            w = 1.0 / (np.arange(len(items)) + _ZIPF_OFFSET)
            self.pools[pos] = (items, np.cumsum(w / w.sum()))
        self.entries = keep

    def pick(self, rng: np.random.Generator, pos: str) -> Entry:
        """Draw one entry of part of speech ``pos`` with Zipf weights."""
        items, cdf = self.pools[pos]
        return items[min(int(np.searchsorted(cdf, rng.random())), len(items) - 1)]

    def words(self) -> list[str]:
        """Every surface form the grammar can emit, sorted; this is the corpus vocab.txt."""
        out = set(FUNCTION_WORDS)
        for e in self.entries:
            out.update(_surface(e))
        return sorted(out)


def _an(word: str) -> str:
    return "an" if word[0] in "aeio" or word.startswith(("umb", "unc", "ug", "up")) else "a"


class _Grammar:
    """Phrase-structure templates; each method returns a list of words."""

    def __init__(self, lex: Lexicon, rng: np.random.Generator) -> None:
        self.lex, self.rng = lex, rng

    def p(self, prob: float) -> bool:
        return bool(self.rng.random() < prob)

    def one(self, options: list[str]) -> str:
        return options[int(self.rng.integers(len(options)))]

    def adj(self, prob: float = 0.3) -> list[str]:
        return [self.lex.pick(self.rng, "adj").word] if self.p(prob) else []

    def np_(self, pos: str, obj: bool = False) -> tuple[list[str], str]:
        """A noun phrase and its agreement class ('1s', '2', '3s', '1p', '3p')."""
        if pos == "n_person" and self.p(0.35):
            subj = [("i", "1s"), ("you", "2"), ("he", "3s"), ("she", "3s"), ("we", "1p"), ("they", "3p")]
            objs = {"i": "me", "he": "him", "she": "her", "we": "us", "they": "them", "you": "you"}
            word, agr = subj[int(self.rng.integers(len(subj)))]
            return [objs[word] if obj else word], agr
        e = self.lex.pick(self.rng, pos)
        a = self.adj()
        if not e.uncountable and self.p(0.25):
            det = self.one(["the", "the", "my", "our", "their", "some", "these", "those"])
            return [det, *a, plural(e)], "3p"
        dets = ["the", "the", "the", "my", "your", "his", "her", "our", "this", "that"]
        det = self.one([*dets, "some"] if e.uncountable else [*dets, "a", "a"])
        if det == "a":
            det = _an((a or [e.word])[0])
        return [det, *a, e.word], "3s"

    def place(self) -> list[str]:
        e = self.lex.pick(self.rng, "n_place")
        return [
            self.one(["in", "in", "at", "near", "behind", "beside"]),
            self.one(["the", "the", "my", "our"]),
            e.word,
        ]

    def time(self, tense: str) -> list[str]:
        options = {
            "past": [
                ["yesterday"],
                ["last", "night"],
                ["last", "week"],
                ["last", "year"],
                ["this", "morning"],
            ],
            "future": [["tomorrow"], ["tonight"], ["next", "week"], ["next", "month"], ["this", "evening"]],
        }[tense]
        return options[int(self.rng.integers(len(options)))]

    def tail(self, tense: str = "past") -> list[str]:
        r = self.rng.random()
        if r < 0.3:
            return self.place()
        if r < 0.45:
            return self.time(tense)
        if r < 0.55:
            return ["with", *self.np_("n_person", obj=True)[0]]
        return []

    def be(self, agr: str, tense: str) -> str:
        if tense == "past":
            return "was" if agr in ("1s", "3s") else "were"
        return {"1s": "am", "3s": "is"}.get(agr, "are")

    def verb_obj(self) -> tuple[Entry, list[str]]:
        kind = self.one(["thing", "thing", "thing", "person", "abstract"])
        obj = self.np_("n_" + kind, obj=True)[0]
        return self.lex.pick(self.rng, "v_" + kind), obj

    def clause(self) -> list[str]:
        subj, agr = self.np_("n_person")
        r = self.rng.random()
        if r < 0.55:
            verb, obj = self.verb_obj()
            return [*subj, past(verb), *obj, *self.tail()]
        if r < 0.8:
            tail = [self.lex.pick(self.rng, "adv").word] if self.p(0.4) else []
            return [*subj, past(self.lex.pick(self.rng, "v_intrans")), *tail, *self.tail()]
        thing, tagr = self.np_("n_thing")
        mod = ["very"] if self.p(0.3) else []
        return [*thing, self.be(tagr, "past"), *mod, self.lex.pick(self.rng, "adj").word]

    def sentence(self) -> list[str]:
        templates: list[tuple[float, Callable[[], list[str]]]] = [
            (0.35, self.clause),
            (0.08, self.future),
            (0.08, self.modal),
            (0.07, self.progressive),
            (0.07, self.description),
            (0.05, self.there),
            (0.05, self.opinion),
            (0.05, self.question),
            (0.05, self.habit),
            (0.04, lambda: ["when", *self.clause(), *self.clause()]),
            (0.04, self.intention),
            (0.04, lambda: [self.one(["please", "let's"]), *self.imperative()]),
            (0.03, lambda: [*self.clause(), "because", *self.clause()]),
        ]
        weights = np.cumsum([w for w, _ in templates])
        idx = int(np.searchsorted(weights, self.rng.random() * weights[-1]))
        return templates[min(idx, len(templates) - 1)][1]()

    def future(self) -> list[str]:
        verb, obj = self.verb_obj()
        return [
            *self.np_("n_person")[0],
            "will",
            verb.word,
            *obj,
            *(self.time("future") if self.p(0.4) else []),
        ]

    def modal(self) -> list[str]:
        verb, obj = self.verb_obj()
        neg = ["not"] if self.p(0.15) else []
        return [
            *self.np_("n_person")[0],
            self.one(["can", "could", "should", "might", "must"]),
            *neg,
            verb.word,
            *obj,
        ]

    def progressive(self) -> list[str]:
        subj, agr = self.np_("n_person")
        verb, obj = self.verb_obj()
        return [*subj, self.be(agr, "past"), gerund(verb), *obj, *self.tail()]

    def description(self) -> list[str]:
        subj, agr = self.np_(self.one(["n_thing", "n_person", "n_place"]))
        mod = [self.one(["very", "really", "quite", "always", "never"])] if self.p(0.4) else []
        return [*subj, self.be(agr, self.one(["past", "present"])), *mod, self.lex.pick(self.rng, "adj").word]

    def there(self) -> list[str]:
        e = self.lex.pick(self.rng, "n_thing")
        a = self.adj(0.4)
        det = "some" if e.uncountable else _an((a or [e.word])[0])
        return ["there", self.one(["is", "was"]), det, *a, e.word, *self.place()]

    def opinion(self) -> list[str]:
        subj, agr = self.np_("n_person")
        head = self.one(["thought", "think"])
        if head == "think" and agr == "3s":
            head = "thinks"
        return [*subj, head, "that", *self.clause()]

    def question(self) -> list[str]:
        verb, obj = self.verb_obj()
        return ["did", *self.np_("n_person")[0], verb.word, *obj, *self.tail()]

    def habit(self) -> list[str]:
        subj, agr = self.np_("n_person")
        verb, obj = self.verb_obj()
        form = third(verb) if agr == "3s" else verb.word
        return [*subj, form, *obj, "every", self.one(["day", "morning", "evening", "week", "night"])]

    def intention(self) -> list[str]:
        subj, agr = self.np_("n_person")
        verb, obj = self.verb_obj()
        head = self.one(["wanted", "decided"]) if self.p(0.6) else ("wants" if agr == "3s" else "want")
        return [*subj, head, "to", verb.word, *obj]

    def imperative(self) -> list[str]:
        verb = self.lex.pick(self.rng, "v_thing")
        return [verb.word, *self.np_("n_thing", obj=True)[0], *(self.place() if self.p(0.3) else [])]


def make_sentence(lex: Lexicon, rng: np.random.Generator, min_words: int, max_words: int) -> str:
    """Draw grammar sentences until one has ``min_words``..``max_words`` words; return it joined."""
    grammar = _Grammar(lex, rng)
    for _ in range(1000):
        words = grammar.sentence()
        if min_words <= len(words) <= max_words:
            assert all(_WORD_RE.match(w) for w in words), words
            return " ".join(words)
    raise RuntimeError(f"grammar cannot produce {min_words}..{max_words}-word sentences")


def split_sentences(
    seed: int, counts: dict[str, int], vocab_size: int, min_words: int, max_words: int
) -> dict[str, list[str]]:
    """Sentences per split, globally de-duplicated; utterance (split, i) has its own RNG stream.

    Splits are filled in the order test, val, train so that held-out sets do not change when the
    training set grows.
    """
    lex = Lexicon(vocab_size)
    seen: set[str] = set()
    out: dict[str, list[str]] = {}
    for split in sorted(counts, key=lambda s: -SPLIT_CODES[s]):
        sents = []
        for i in range(counts[split]):
            rng = np.random.default_rng([seed, SPLIT_CODES[split], i])
            sent = make_sentence(lex, rng, min_words, max_words)
            while sent in seen:
                sent = make_sentence(lex, rng, min_words, max_words)
            seen.add(sent)
            sents.append(sent)
        out[split] = sents
    return out
