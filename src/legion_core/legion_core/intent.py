"""What a person means by a request: free text -> one task, "did you mean A or B", or no task at all.

Cosine similarity of sentence embeddings barely tells a sentence from its opposite ("push the drawer
back in" sits next to "pull the drawer out"), so the nearest-description rule read opposites as each
other. This model is fitted on paraphrases the team writes (``data/intents/train.yaml``: at least 40
a task, the opposite tasks as hard negatives, refusals as their own class) in two stages:

1. **What** (the family): multinomial logistic regression over the sentence embedding (all-MiniLM-L6-v2,
   :class:`legion_core.language.LanguageEncoder`) and character n-grams (typos, word forms). Each
   opposite pair (drawer-open / drawer-close) is one family here, and refusals (``off-task``) one
   more.
2. **Which way** (the direction): one binary logistic regression for every opposite pair together
   (open, on, out against close, off, in), over the embedding and word and character n-grams. Pooled,
   "turn the faucet handle to open" learns from every door, drawer and window sentence as well.

Before both, :class:`Speller` mends typos ("opne teh windwo" -> "open the window"). A request is
refused as off-task when the family model gives the refusals more than 1 - ``min_confidence``; it is
ambiguous ("did you mean A or B") when the two likeliest task families are closer than
``family_margin`` or the direction is less sure than ``direction_margin``. The three thresholds
are tuned when the model is fitted, by cross-validation on the training sentences alone: the held-out
sentences (``data/intents/held_out.yaml``, :func:`load_held_out`) measure the model (``legion bench
language``) and nothing else. Why two stages and these features (measured by cross-validation on
train.yaml): docs/language.md.

Pure learning code: numpy, scikit-learn and an ``embed`` callable; no ROS. Fitting takes a few seconds
(the embeddings of the training sentences are cached by the encoder); :func:`load_or_fit` keeps the
fitted model in memory per data file and embedder.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

OFF_TASK = 'off-task'
DATA_DIR = Path(__file__).resolve().parent / 'data' / 'intents'
DEFAULT_TRAIN = DATA_DIR / 'train.yaml'
DEFAULT_HELD_OUT = DATA_DIR / 'held_out.yaml'
MIN_SENTENCES = 10  # a task with fewer cannot be learnt (nor cross-validated) reliably
MAX_CANDIDATES = 4  # "did you mean A, B, C or D"
MAX_MENDED = 40  # words of one step the speller looks at
MIN_SHARE = 0.25  # a reading offered in "did you mean" has at least this share of the best one's probability

Embed = Callable[[list[str]], np.ndarray]


# --------------------------------------------------------------------------- data
Label = str | tuple[str, ...]  # a task, OFF_TASK, or the candidates of an ambiguous request


@dataclass(frozen=True)
class IntentData:
    """The training sentences: ``intents`` task -> sentences, ``off_task`` sentences to refuse,
    ``ambiguous`` (sentence, (task A, task B, ...)) for requests that could mean any of them, and
    ``opposites``: pairs (opening task, closing task) that are one action in two directions."""

    intents: dict[str, list[str]]
    off_task: list[str]
    opposites: list[tuple[str, str]]
    ambiguous: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    source: str = '<data>'

    @property
    def tasks(self) -> list[str]:
        return list(self.intents)

    def sentences(self) -> tuple[list[str], list[Label]]:
        """(texts, labels): a task, ``OFF_TASK``, or a tuple of candidates (ambiguous)."""
        texts = [t for task in self.intents for t in self.intents[task]] + list(self.off_task)
        labels: list[Label] = [task for task in self.intents for _ in self.intents[task]]
        labels += [OFF_TASK] * len(self.off_task)
        texts += [text for text, _ in self.ambiguous]
        labels += [candidates for _, candidates in self.ambiguous]
        return texts, labels

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for task, texts in self.intents.items():
            digest.update(task.encode() + b'\0' + '\0'.join(texts).encode() + b'\1')
        digest.update('\0'.join(self.off_task).encode() + b'\2')
        digest.update(repr((self.opposites, self.ambiguous)).encode())
        return digest.hexdigest()[:16]


def _strings(value, where: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ValueError(f'{where}: expected a non-empty list of sentences, got {value!r:.80}')
    for i, text in enumerate(value):
        if not isinstance(text, str) or not text.strip():
            # YAML reads yes, no, on, off and numbers as non-strings: quote them ('yes').
            raise ValueError(f'{where}: sentence {i} must be a non-empty string (quote yes/no/on/off and '
                             f'numbers); got {text!r}')
    return [text.strip() for text in value]


def validate_intent_data(data, source: str = '<data>') -> IntentData:
    """Check ``{intents: {task: [sentences]}, off_task: [sentences], ambiguous: [{text, candidates: [a,
    b]}], opposites: [[a, b], ...]}``."""
    if not isinstance(data, dict) or 'intents' not in data:
        raise ValueError(f'{source}: expected a mapping with "intents", "off_task", "ambiguous" and '
                         '"opposites"')
    unknown = set(data) - {'intents', 'off_task', 'ambiguous', 'opposites'}
    if unknown:
        raise ValueError(f'{source}: unknown keys {sorted(unknown)}')
    intents_raw = data['intents']
    if not isinstance(intents_raw, dict) or not intents_raw:
        raise ValueError(f'{source}: "intents" must map task names to lists of sentences')
    intents = {}
    for task, texts in intents_raw.items():
        if not isinstance(task, str) or not task.strip() or task == OFF_TASK:
            raise ValueError(f'{source}: bad task name {task!r}')
        intents[task] = _strings(texts, f'{source}: task {task}')
        if len(intents[task]) < MIN_SENTENCES:
            raise ValueError(f'{source}: task {task} has {len(intents[task])} sentences; at least '
                             f'{MIN_SENTENCES} are needed')
    off_task = _strings(data.get('off_task'), f'{source}: off_task')
    if len(off_task) < MIN_SENTENCES:
        raise ValueError(f'{source}: off_task has {len(off_task)} sentences; at least {MIN_SENTENCES}')
    opposites = []
    for pair in data.get('opposites') or []:
        if not (isinstance(pair, list) and len(pair) == 2 and all(p in intents for p in pair)
                and pair[0] != pair[1]):
            raise ValueError(f'{source}: opposites: {pair!r} is not a pair of two described tasks')
        opposites.append((pair[0], pair[1]))
    paired = [task for pair in opposites for task in pair]
    if len(paired) != len(set(paired)):
        raise ValueError(f'{source}: opposites: a task may be in one pair only')
    ambiguous = []
    for entry in data.get('ambiguous') or []:
        candidates = entry.get('candidates') if isinstance(entry, dict) else None
        if not (isinstance(entry, dict) and isinstance(entry.get('text'), str) and entry['text'].strip()
                and isinstance(candidates, list) and len(candidates) >= 2
                and all(c in intents for c in candidates) and len(set(candidates)) == len(candidates)):
            raise ValueError(f'{source}: ambiguous: {entry!r:.100} is not {{text, candidates: [two or '
                             'more described tasks]}}')
        ambiguous.append((entry['text'].strip(), tuple(candidates)))
    seen: dict[str, Label] = {}
    labelled = [(label, text) for label, texts in [*intents.items(), (OFF_TASK, off_task)] for text in texts]
    for label, text in labelled + [(candidates, text) for text, candidates in ambiguous]:
        key = normalise(text)
        if key in seen and seen[key] != label:
            raise ValueError(f'{source}: "{text}" is both {seen[key]} and {label}')
        seen[key] = label
    return IntentData(intents, off_task, opposites, ambiguous, str(source))


def _read_yaml(path: Path):
    import yaml

    if not path.is_file():
        raise FileNotFoundError(f'intent data file {path} does not exist')
    try:
        return yaml.safe_load(path.read_text(encoding='utf-8'))
    except yaml.YAMLError as error:
        raise ValueError(f'{path}: not valid YAML: {error}') from error


def load_intent_data(path: str | os.PathLike | None = None) -> IntentData:
    """The training sentences (default: the shipped ``data/intents/train.yaml``)."""
    path = Path(path) if path is not None else DEFAULT_TRAIN
    return validate_intent_data(_read_yaml(path), str(path))


@dataclass(frozen=True)
class HeldOut:
    """Sentences that measure a model and never fit or tune one (``data/intents/held_out.yaml``)."""

    steps: dict[str, list[str]]
    off_task: list[str]
    ambiguous: list[tuple[str, tuple[str, str]]]
    sequences: list[tuple[str, list[str]]]


def load_held_out(path: str | os.PathLike | None = None) -> HeldOut:
    path = Path(path) if path is not None else DEFAULT_HELD_OUT
    data = _read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get('steps'), dict):
        raise ValueError(f'{path}: expected "steps", "off_task", "ambiguous" and "sequences"')
    steps = {task: _strings(texts, f'{path}: steps: {task}') for task, texts in data['steps'].items()}
    ambiguous = [(entry['text'], tuple(entry['candidates'])) for entry in data.get('ambiguous') or []]
    sequences = [(entry['text'], list(entry['tasks'])) for entry in data.get('sequences') or []]
    return HeldOut(steps, _strings(data.get('off_task'), f'{path}: off_task'), ambiguous, sequences)


def normalise(text: str) -> str:
    """Lower case, words only: how sentences are compared for duplicates."""
    return ' '.join(re.findall(r"[a-z0-9']+", text.lower()))


# --------------------------------------------------------------------------- model
@dataclass(frozen=True)
class IntentConfig:
    """Features and regularisation (chosen by cross-validation on train.yaml, docs/language.md)."""

    family_c: float = 10.0  # inverse L2 strength of the family model
    direction_c: float = 10.0  # ... and of the direction model
    embedding_weight: float = 2.0  # the embedding's scale next to the tf-idf rows (unit norm each)
    char_ngrams: tuple[int, int] = (2, 4)  # character n-grams within words: typos, word forms
    word_ngrams: tuple[int, int] = (1, 2)  # direction model only: "back in", "turn off"
    folds: int = 5  # cross-validation folds for tuning the thresholds
    # Costs the thresholds are tuned to: a wrong task carried out is worse than a refusal.
    cost_wrong: float = 4.0
    cost_refused: float = 1.0
    cost_unasked: float = 0.5  # an ambiguous request refused without its "did you mean": still safe
    cost_guessed: float = 1.0  # an ambiguous request carried out as one of the tasks it could mean
    # None: tuned by cross-validation when fitted; a number: used as it is.
    min_confidence: float | None = None
    family_margin: float | None = None
    direction_margin: float | None = None


@dataclass(frozen=True)
class Intent:
    """The model's reading of one request.

    ``verdict``: ``task`` (``task`` is what it means), ``ambiguous`` (``candidates`` are the readings
    it could be, most likely first: the families within ``family_margin`` of the best and at least
    ``MIN_SHARE`` of its probability, or the two directions of one pair) or ``off_task`` (no task;
    ``task`` is the closest one, for messages).
    ``confidence``: probability of the reading (family x direction).
    """

    text: str
    verdict: str
    task: str | None
    confidence: float
    candidates: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.verdict == 'task'


@dataclass(frozen=True)
class Thresholds:
    min_confidence: float
    family_margin: float
    direction_margin: float


class _Features:
    """Embedding (scaled) beside tf-idf n-grams, as one sparse matrix."""

    def __init__(self, weight: float, analyzers: Sequence[tuple[str, tuple[int, int]]]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.weight = weight
        self.vectorizers = [TfidfVectorizer(analyzer=kind, ngram_range=span, sublinear_tf=True,
                                            lowercase=True, strip_accents='unicode')
                            for kind, span in analyzers]

    def fit(self, texts: list[str]) -> _Features:
        for vectorizer in self.vectorizers:
            vectorizer.fit(texts)
        return self

    def __call__(self, texts: list[str], embeddings: np.ndarray):
        from scipy.sparse import csr_matrix, hstack

        blocks = [csr_matrix(np.asarray(embeddings, dtype=np.float64) * self.weight)]
        blocks += [vectorizer.transform(texts) for vectorizer in self.vectorizers]
        return hstack(blocks).tocsr()


class _Stages:
    """The two fitted classifiers (no thresholds): family probabilities and direction probability.

    An ambiguous training sentence counts half for each of its readings: for both families, or, when
    its candidates are one pair, fully for the family and half for each direction.
    """

    def __init__(self, data: IntentData, texts: list[str], labels: list[Label], embeddings: np.ndarray,
                 config: IntentConfig):
        from sklearn.linear_model import LogisticRegression

        self.pairs = list(data.opposites)
        family_of = {task: f'{a}|{b}' for a, b in self.pairs for task in (a, b)}
        opening = {a for a, _ in self.pairs}
        family_rows: list[tuple[int, str, float]] = []
        direction_rows: list[tuple[int, int, float]] = []
        for i, label in enumerate(labels):
            readings = (label,) if isinstance(label, str) else label
            families = {family_of.get(r, r) for r in readings}
            family_rows += [(i, f, 1.0 / len(families)) for f in sorted(families)]
            paired = [r for r in readings if r in family_of]
            direction_rows += [(i, int(r in opening), 1.0 / len(paired)) for r in paired]
        self.family_features = _Features(config.embedding_weight,
                                         [('char_wb', config.char_ngrams)]).fit(texts)
        features = self.family_features(texts, embeddings)
        rows, targets, weights = zip(*family_rows, strict=True)
        self.family = LogisticRegression(C=config.family_c, max_iter=5000, class_weight='balanced')
        self.family.fit(features[list(rows)], list(targets), sample_weight=np.asarray(weights))
        self.classes = [str(name) for name in self.family.classes_]
        self.direction = None
        if direction_rows:
            rows, targets, weights = zip(*direction_rows, strict=True)
            chosen = sorted(set(rows))
            self.direction_features = _Features(
                config.embedding_weight, [('char_wb', config.char_ngrams), ('word', config.word_ngrams)]
            ).fit([texts[i] for i in chosen])
            features = self.direction_features(texts, embeddings)
            self.direction = LogisticRegression(C=config.direction_c, max_iter=5000, class_weight='balanced')
            self.direction.fit(features[list(rows)], list(targets), sample_weight=np.asarray(weights))

    def probabilities(self, texts: list[str], embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """([N, families] family probabilities in ``classes`` order, [N] probability of opening)."""
        family = self.family.predict_proba(self.family_features(texts, embeddings))
        if self.direction is None:
            return family, np.full(len(texts), 0.5)
        opening = self.direction.predict_proba(self.direction_features(texts, embeddings))[:, 1]
        return family, opening


@dataclass(frozen=True)
class _Readings:
    """Per request: how likely it asks for any task, the two likeliest task families with their
    probabilities and tasks, and the direction."""

    on_task: np.ndarray  # 1 - P(off-task)
    first: list[str]
    p1: np.ndarray
    p2: np.ndarray
    task1: list[str]
    task2: list[str | None]
    paired: np.ndarray  # the best family is an opposite pair
    direction: np.ndarray  # |P(opening) - 0.5| * 2: how sure the direction is, 0..1
    pair: list[tuple[str, str] | None]  # (likelier, other) of the best family's pair
    ranked: list[list[tuple[float, str]]]  # every task family's (probability, task), likeliest first

    def verdicts(self, thresholds: Thresholds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks: refused as off-task; two families too close; the direction too unsure."""
        off = self.on_task < thresholds.min_confidence
        close = np.array([t is not None for t in self.task2]) & (self.p1 - self.p2 < thresholds.family_margin)
        unsure = self.paired & (self.direction < thresholds.direction_margin)
        return off, close, unsure


def _read(stages: _Stages, family: np.ndarray, opening: np.ndarray) -> _Readings:
    pair_of = {f'{a}|{b}': (a, b) for a, b in stages.pairs}

    def task_of(fam: str, q: float) -> str:
        if fam in pair_of:
            return pair_of[fam][0] if q >= 0.5 else pair_of[fam][1]
        return fam

    columns = [j for j, name in enumerate(stages.classes) if name != OFF_TASK]
    off = family[:, stages.classes.index(OFF_TASK)] if OFF_TASK in stages.classes else np.zeros(len(family))
    ranked = []
    for row, q in zip(family, opening, strict=True):
        order = sorted(columns, key=lambda j: -row[j])
        ranked.append([(float(row[j]), task_of(stages.classes[j], q)) for j in order])
    first = [stages.classes[max(columns, key=lambda j: row[j])] for row in family]
    paired = np.array([f in pair_of for f in first], dtype=bool)
    pair = [None if f not in pair_of else (pair_of[f] if q >= 0.5 else pair_of[f][::-1])
            for f, q in zip(first, opening, strict=True)]
    return _Readings(
        1.0 - off, first, np.array([r[0][0] for r in ranked]),
        np.array([r[1][0] if len(r) > 1 else 0.0 for r in ranked]),
        [r[0][1] for r in ranked], [r[1][1] if len(r) > 1 else None for r in ranked], paired,
        2.0 * np.abs(opening - 0.5), pair, ranked)


def _decide(readings: _Readings, thresholds: Thresholds, texts: Sequence[str]) -> list[Intent]:
    off, close, unsure = readings.verdicts(thresholds)
    out = []
    for i, text in enumerate(texts):
        sure = (0.5 + readings.direction[i] / 2.0) if readings.paired[i] else 1.0
        confidence = round(float(readings.p1[i] * sure), 4)
        task = readings.task1[i]
        if off[i]:
            out.append(Intent(text, 'off_task', task, confidence))
        elif close[i] or unsure[i]:
            if close[i]:
                floor = max(readings.p1[i] - thresholds.family_margin, MIN_SHARE * readings.p1[i])
                candidates = [t for p, t in readings.ranked[i] if p > floor]
            else:
                candidates = readings.pair[i]
            out.append(Intent(text, 'ambiguous', task, confidence, tuple(candidates[:MAX_CANDIDATES])))
        else:
            out.append(Intent(text, 'task', task, confidence))
    return out


_GRID_CONFIDENCE = tuple(float(x) for x in np.round(np.arange(0.20, 0.81, 0.05), 2))
_GRID_MARGIN = tuple(float(x) for x in np.round(np.arange(0.0, 0.71, 0.05), 2))


def _tune(readings: _Readings, labels: list[Label], config: IntentConfig) -> Thresholds:
    """The thresholds with the least cost on out-of-fold readings (ties: the smallest).

    Cost: ``cost_wrong`` for a task carried out that was not meant (a wrong one, for an off-task
    request, or none of an ambiguous request's readings), ``cost_guessed`` for an ambiguous request
    carried out as one of its readings, ``cost_refused`` for a meant task refused, ``cost_unasked`` for
    an ambiguous request refused without its candidates.
    """
    is_task = np.array([isinstance(label, str) and label != OFF_TASK for label in labels])
    is_ambiguous = np.array([not isinstance(label, str) for label in labels])
    right = np.array([t == label for t, label in zip(readings.task1, labels, strict=True)])
    guess = np.array([not isinstance(label, str) and t in label
                      for t, label in zip(readings.task1, labels, strict=True)])
    right_families = np.array([not isinstance(label, str) and {a, b} <= set(label) for a, b, label in
                               zip(readings.task1, readings.task2, labels, strict=True)])
    right_pair = np.array([not isinstance(label, str) and pair is not None and set(pair) == set(label)
                           for pair, label in zip(readings.pair, labels, strict=True)])
    best = None
    confidences = _GRID_CONFIDENCE if config.min_confidence is None else (config.min_confidence,)
    margins = _GRID_MARGIN if config.family_margin is None else (config.family_margin,)
    directions = _GRID_MARGIN if config.direction_margin is None else (config.direction_margin,)
    for c, m, d in itertools.product(confidences, margins, directions):
        off, close, unsure = readings.verdicts(Thresholds(c, m, d))
        accepted = ~off & ~close & ~unsure
        asked = ~off & ((close & right_families) | (~close & unsure & right_pair))
        wrong = np.sum(accepted & ~right & ~guess)
        cost = (config.cost_wrong * wrong + config.cost_guessed * np.sum(accepted & guess)
                + config.cost_refused * np.sum(is_task & ~accepted)
                + config.cost_unasked * np.sum(is_ambiguous & ~accepted & ~asked))
        key = (float(cost), c + m + d)
        if best is None or key < best[0]:
            best = (key, Thresholds(c, m, d))
    return best[1]


class Speller:
    """Mends typos before a request is read: a word that is neither a word of the sentence model's
    vocabulary (``known``) nor of the training sentences becomes the training word nearest to it
    (optimal string alignment distance: a swap of two letters is one edit), if it is 1 edit away (2 for
    words of 6 letters or more). "opne teh windwo" -> "open the window". The sentence model splits an
    unknown word into pieces that mean nothing, so without this a misspelt request reads as nonsense.
    """

    def __init__(self, training_texts: Sequence[str], known: Iterable[str]):
        counts: dict[str, int] = {}
        for text in training_texts:
            for word in _WORD_RE.findall(text.lower()):
                counts[word] = counts.get(word, 0) + 1
        dictionary = frozenset(known)

        def typo(word: str) -> bool:  # the training sentences' own typos ("opne") are no targets
            return word not in dictionary and any(
                other != word and (other in dictionary or counts[other] > counts[word])
                and _edits(word, other, 1) <= 1 for other in counts)

        self.vocabulary = {word: count for word, count in counts.items() if not typo(word)}
        self.known = dictionary | frozenset(self.vocabulary)
        self._by_length: dict[int, list[tuple[str, int]]] = {}
        for word, count in self.vocabulary.items():
            self._by_length.setdefault(len(word), []).append((word, count))
        self._memo: dict[str, str] = {}

    def word(self, word: str) -> str:
        lower = word.lower()
        if lower in self.known or len(lower) < 3:
            return word
        if lower not in self._memo:
            limit = 1 if len(lower) < 6 else 2
            best = (limit + 1, 0, lower)
            for length in range(len(lower) - limit, len(lower) + limit + 1):
                for candidate, count in self._by_length.get(length, ()):
                    distance = _edits(lower, candidate, limit)
                    if distance <= limit and (distance, -count) < best[:2]:
                        best = (distance, -count, candidate)
            if len(self._memo) < 10_000:
                self._memo[lower] = best[2]
            return best[2]
        return self._memo[lower]

    def __call__(self, text: str) -> str:
        mended = 0

        def mend(match: re.Match) -> str:
            nonlocal mended
            mended += 1
            # One step is a few words: past MAX_MENDED it is no request (2 KB of unknown words cost
            # 1.3 s to mend, the first 40 0.12 s).
            return self.word(match[0]) if mended <= MAX_MENDED else match[0]

        return _WORD_RE.sub(mend, text)


_WORD_RE = re.compile(r'[A-Za-z]+')


def _edits(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance of ``a`` and ``b`` (``limit + 1`` once past ``limit``)."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[len(b)]


class IntentModel:
    """Fitted two-stage intent model; :meth:`predict` reads requests (see the module docstring)."""

    def __init__(self, data: IntentData, embed: Embed, stages: _Stages, thresholds: Thresholds,
                 config: IntentConfig, cv: dict, speller: Speller | None = None):
        self.data = data
        self.speller = speller
        self.tasks = data.tasks
        self.opposites = list(data.opposites)
        self.thresholds = thresholds
        self.config = config
        self.cross_validation = cv  # out-of-fold summary of the training sentences
        self._embed = embed
        self._stages = stages

    @classmethod
    def fit(cls, data: IntentData, embed: Embed, config: IntentConfig | None = None,
            known_words: Iterable[str] | None = None) -> IntentModel:
        """Fit on ``data``; ``known_words`` (the sentence model's vocabulary) turns on the
        :class:`Speller`, which mends the training sentences' typos as it will mend requests'."""
        config = config or IntentConfig()
        texts, labels = data.sentences()
        speller = None if known_words is None else Speller(texts, known_words)
        if speller is not None:
            texts = [speller(text) for text in texts]
        embeddings = np.asarray(embed(texts), dtype=np.float32)
        with _one_thread():
            model = cls._fit(data, embed, config, texts, labels, embeddings)
        model.speller = speller
        return model

    @classmethod
    def _fit(cls, data: IntentData, embed: Embed, config: IntentConfig, texts: list[str],
             labels: list[Label], embeddings: np.ndarray) -> IntentModel:
        from sklearn.model_selection import StratifiedKFold

        family_probs = None
        opening = np.full(len(texts), 0.5)
        folds = StratifiedKFold(config.folds, shuffle=True, random_state=0)
        stages = None
        strata = [label if isinstance(label, str) else 'ambiguous' for label in labels]
        for train, test in folds.split(texts, strata):
            stages = _Stages(data, [texts[i] for i in train], [labels[i] for i in train], embeddings[train],
                             config)
            probs, opens = stages.probabilities([texts[i] for i in test], embeddings[test])
            if family_probs is None:
                family_probs = np.zeros((len(texts), len(stages.classes)))
            family_probs[test] = probs
            opening[test] = opens
        readings = _read(stages, family_probs, opening)
        thresholds = _tune(readings, labels, config)
        oof = _decide(readings, thresholds, texts)
        cv = _summary(oof, labels)
        final = _Stages(data, texts, labels, embeddings, config)
        return cls(data, embed, final, thresholds, config, cv)

    def predict(self, texts: Sequence[str]) -> list[Intent]:
        """The reading of each request (its ``text`` as given, typos and all)."""
        texts = list(texts)
        if not texts:
            return []
        mended = [self.speller(text) for text in texts] if self.speller is not None else texts
        embeddings = np.asarray(self._embed(mended), dtype=np.float32)
        with _one_thread():
            family, opening = self._stages.probabilities(mended, embeddings)
        return _decide(_read(self._stages, family, opening), self.thresholds, texts)

    def with_embed(self, embed: Embed) -> IntentModel:
        """The same fitted model reading through another embedder (e.g. one without a cache)."""
        return IntentModel(self.data, embed, self._stages, self.thresholds, self.config,
                           self.cross_validation, self.speller)



_CONTROLLER = None


def _one_thread():
    """BLAS and OpenMP on one thread: these products are small, and on shared cores a second thread
    spin-waits (the first fit took 13-21 s with scipy's two L-BFGS threads beside two training runs,
    1.4 s with one). One controller for the process: finding the thread pools costs 5 ms a time."""
    global _CONTROLLER
    if _CONTROLLER is None:
        import scipy.optimize  # noqa: F401  (load scipy's own BLAS first: it has its own pool)
        import sklearn.linear_model  # noqa: F401
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1)


def _summary(intents: list[Intent], labels: list[Label]) -> dict:
    """Accuracy, wrong and refused among task sentences; refused off-task and asked ambiguous ones."""
    tasks = [(i, label) for i, label in zip(intents, labels, strict=True)
             if isinstance(label, str) and label != OFF_TASK]
    off = [i for i, label in zip(intents, labels, strict=True) if label == OFF_TASK]
    ambiguous = [(i, label) for i, label in zip(intents, labels, strict=True) if not isinstance(label, str)]
    return {'accuracy': round(sum(i.accepted and i.task == lab for i, lab in tasks) / max(len(tasks), 1), 4),
            'wrong': sum(i.accepted and i.task != lab for i, lab in tasks),
            'refused': sum(not i.accepted for i, _ in tasks),
            'off_task_refused': round(sum(not i.accepted for i in off) / max(len(off), 1), 4),
            'ambiguous_asked': round(sum(i.verdict == 'ambiguous' and set(i.candidates[:2]) <= set(lab)
                                         for i, lab in ambiguous) / max(len(ambiguous), 1), 4)}


# --------------------------------------------------------------------------- loading
_MODELS: dict[tuple, IntentModel] = {}


def load_or_fit(embed: Embed, path: str | os.PathLike | None = None, config: IntentConfig | None = None,
                key: str = '', known_words: Iterable[str] | None = None) -> IntentModel:
    """The model fitted on ``path`` (default: the shipped train.yaml), fitted once per process for the
    same data, config and ``key`` (name the embedder there: e.g. the encoder's model fingerprint).
    ``known_words``: see :meth:`IntentModel.fit`."""
    data = load_intent_data(path)
    config = config or IntentConfig()
    cache_key = (data.fingerprint(), config, key or id(embed), known_words is not None)
    model = _MODELS.get(cache_key)
    if model is None:
        model = _MODELS[cache_key] = IntentModel.fit(data, embed, config, known_words)
    return model

