"""Natural-language instructions -> a sequence of learned skills, and the sequencer that runs them.

Pure Python (no rclpy): the ``instruction`` node and ``legion sim`` are thin adapters over this.

* :func:`validate_instruction` rejects what must never reach the encoder: non-UTF-8 bytes, control
  characters, empty or oversized text.
* :func:`split_steps` cuts a long-horizon instruction into steps at explicit sequencing cues
  ("then", "after that", ";", numbered lists, new lines, sentences).
* :class:`IntentMatcher` maps each step to a task with the intent model of :mod:`legion_core.intent`
  (fitted on paraphrases, opposites as hard negatives): a task, a refusal (no skill, or one this robot
  has not learnt), or "did you mean A or B". It is what the instruction node and ``legion sim`` use.
* :class:`SkillMatcher`, the earlier rule, maps each step to a task by cosine similarity of sentence
  embeddings against every task's descriptions, with a confidence threshold and a margin over the
  runner-up task (the trainer node still reads "learn ..." requests with it). It reads opposites as
  each other (``legion bench language`` measures both).
* :class:`Sequencer` runs a plan: each step goes queued -> running -> succeeded / failed / skipped /
  cancelled; it advances on a success report or a step timeout and emits status events
  (:class:`legion_ros.interfaces.InstructionStatus`, whose enums it uses). A step's clock pauses while
  the arm is held from outside it (sim2real not active: ``pause`` / ``resume``).
* :class:`TwinTime` is the time steps are timed in when a simulator sets the pace: its clock, counted
  forward only, with the real-time factor.
* :class:`InstructionRequest` is the one shape of a message on ``/legion/instruction`` (plain text, or
  JSON ``{"id", "text"}`` from a client that follows its own instruction); every status event of an
  instruction echoes its ``instruction_id``. :class:`Inbox` holds the instructions received and not yet
  planned: bounded, first in first out, a resent id taken once; one more than it holds is rejected
  (``queue_full``), never dropped silently.
"""
from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum

import numpy as np

from legion_ros.interfaces import SequenceState, StepState

MAX_INSTRUCTION_BYTES = 2048
MAX_STEPS = 16

# Cues that start a new step. Order matters only for readability; they are joined into one regex.
_SEQUENCE_CUES = (
    # "once that is done", "when that's finished", "after this is complete", "once done"
    r',?\s*\b(?:and\s+)?(?:once|when|after)\s+(?:(?:that|this|it)(?:\s*\'s|\s+is|\s+has\s+been)?\s+)?'
    r'(?:done|finished|complete|completed|over)\b,?',
    r',?\s*\b(?:and\s+)?after\s+(?:which|you(?:\s+have|\s*\'ve)\s+done\s+(?:that|this|it))\b,?',
    r',?\s*\bsubsequently\b,?',
    r',?\s*\band\s+then\b',
    r',?\s*\band\s+after\s+that\b',
    r',?\s*\bafter\s+that\b',
    r',?\s*\bafterwards\b',
    r',?\s*\bfollowed\s+by\b',
    r',?\s*\bthen\b',
    r',\s*next\b,?',  # a bare "next" is also a preposition ("next to the goal")
    r',?\s*\b(?:and\s+)?finally\b,?',
    r',?\s*\blastly\b,?',
    r',\s*and\b',
)
_CUE_RE = re.compile('|'.join(_SEQUENCE_CUES), re.IGNORECASE)
# Hard separators: line breaks, ';', sentence ends, list bullets and numbers ("1.", "2)", "(3)", "-").
# A sentence end needs a letter before the stop, so "1. open" stays a list number.
_HARD_SPLIT_RE = re.compile(r'[\n;]+|(?<=[a-z)])[.!?]+\s+(?=\S)', re.IGNORECASE)
_LIST_ITEM_RE = re.compile(r'^\s*(?:\(?\d{1,2}[.):]|[-*\u2022]|step\s+\d{1,2}\s*[:.)-]?)\s*', re.IGNORECASE)
_INLINE_NUMBER_RE = re.compile(r'(?:^|\s)\(?\d{1,2}[.)]\s+(?=[a-z])', re.IGNORECASE)
_FILLER_RE = re.compile(
    r'^(?:(?:please|first of all|first(?:ly)?|now|and|then|next|finally|lastly|also|afterwards|'
    r'could you|can you|would you|kindly)\b[\s,]*)+', re.IGNORECASE)


class Reason(str, Enum):
    """Why an instruction or one of its steps was rejected (stable codes for status consumers)."""

    EMPTY = 'empty'
    TOO_LONG = 'too_long'
    NOT_UTF8 = 'not_utf8'
    CONTROL_CHARACTERS = 'control_characters'
    TOO_MANY_STEPS = 'too_many_steps'
    UNKNOWN_SKILL = 'unknown_skill'
    AMBIGUOUS = 'ambiguous'
    NOT_LEARNED = 'not_learned'
    MALFORMED = 'malformed'
    QUEUE_FULL = 'queue_full'
    ARM_STOPPED = 'arm_stopped'  # the arm stands in a latched e-stop until an operator resets it
    ARM_UNAVAILABLE = 'arm_unavailable'  # sim2real is finalized: nothing commands the arm


class InstructionRejectedError(ValueError):
    """The instruction cannot be executed; ``reasons`` lists every problem found."""

    def __init__(self, reasons: list[dict], instruction_id: str | None = None):
        self.reasons = reasons
        self.instruction_id = instruction_id
        super().__init__('; '.join(r['message'] for r in reasons))


def _reason(code: Reason, message: str, **extra) -> dict:
    return {'code': code.value, 'message': message, **extra}


def validate_instruction(raw: str | bytes, max_bytes: int = MAX_INSTRUCTION_BYTES) -> str:
    """The instruction as clean text, or :class:`InstructionRejectedError` saying what is wrong with it."""
    if isinstance(raw, bytes):
        if len(raw) > max_bytes:
            raise InstructionRejectedError([_reason(
                Reason.TOO_LONG, f'instruction is {len(raw)} bytes, the limit is {max_bytes}')])
        try:
            raw = raw.decode('utf-8')
        except UnicodeDecodeError as error:
            raise InstructionRejectedError([_reason(
                Reason.NOT_UTF8, f'instruction is not valid UTF-8 (byte {error.start})')]) from None
    if not isinstance(raw, str):
        raise TypeError(f'instruction must be str or bytes, not {type(raw).__name__}')
    size = len(raw.encode('utf-8', errors='surrogatepass'))
    if size > max_bytes:
        raise InstructionRejectedError([_reason(
            Reason.TOO_LONG, f'instruction is {size} bytes, the limit is {max_bytes}')])
    # Lone surrogates come from undecodable bytes smuggled through a str (e.g. surrogateescape).
    if any('\ud800' <= ch <= '\udfff' for ch in raw):
        raise InstructionRejectedError([_reason(Reason.NOT_UTF8, 'instruction contains invalid UTF-8')])
    bad = sorted({f'U+{ord(ch):04X}' for ch in raw
                  if unicodedata.category(ch) in ('Cc', 'Cf', 'Cs', 'Co', 'Cn') and ch not in '\n\t\r'})
    if bad:
        raise InstructionRejectedError([_reason(
            Reason.CONTROL_CHARACTERS, f'instruction contains control characters {", ".join(bad[:5])}')])
    text = unicodedata.normalize('NFKC', raw).strip()
    if not text:
        raise InstructionRejectedError([_reason(Reason.EMPTY, 'instruction is empty')])
    return text


MAX_ID_CHARS = 64
_ID_RE = re.compile(rf'[A-Za-z0-9._:@-]{{1,{MAX_ID_CHARS}}}')


@dataclass(frozen=True)
class InstructionRequest:
    """One message on ``/legion/instruction``.

    Plain text is the instruction itself (``ros2 topic pub /legion/instruction std_msgs/String
    "data: 'reach the goal'"``); the node gives it an id. A JSON object ``{"id": "...", "text": "..."}``
    carries the sender's own id (1-64 of ``A-Z a-z 0-9 . _ : @ -``): a client follows the status events
    that echo it and may resend the same message safely (an id is taken once).
    """

    text: str | bytes
    id: str | None = None

    def to_json(self) -> str:
        text = self.text.decode('utf-8') if isinstance(self.text, bytes) else self.text
        return json.dumps({'id': self.id, 'text': text})

    @classmethod
    def from_payload(cls, payload: bytes) -> InstructionRequest:
        """The request in a message's payload bytes; :class:`InstructionRejectedError` (``malformed``)
        for a JSON object that is not ``{"id", "text"}``. Text is validated later, when planned."""
        if not payload.lstrip().startswith(b'{'):
            return cls(payload)
        try:
            envelope = json.loads(payload.decode('utf-8'))
        except (UnicodeDecodeError, ValueError):
            return cls(payload)  # text that merely starts with a brace: planned (and judged) as text
        if not isinstance(envelope, dict):
            return cls(payload)
        ident = envelope.get('id')
        ident = ident if isinstance(ident, str) and _ID_RE.fullmatch(ident) else None
        problems = []
        if set(envelope) - {'id', 'text'}:
            problems.append(f'unknown keys {sorted(set(envelope) - {"id", "text"})}')
        if not isinstance(envelope.get('text'), str):
            problems.append('"text" must be a string')
        if 'id' in envelope and ident is None:
            problems.append(f'"id" must be 1-{MAX_ID_CHARS} characters of A-Z a-z 0-9 . _ : @ -')
        if problems:
            raise InstructionRejectedError([_reason(
                Reason.MALFORMED, 'instruction envelope {"id", "text"}: ' + '; '.join(problems))], ident)
        return cls(envelope['text'], ident)


class Inbox:
    """Instructions received and not yet planned, first in first out, at most ``capacity``.

    Planning (sentence embeddings) is slow next to taking a message, so the node takes every message
    at once and plans them one by one; what does not fit is refused by :meth:`offer` for the caller
    to reject with a status (DDS would have dropped it silently). An id seen among the last
    ``remember`` is a resend and is taken once.
    """

    def __init__(self, capacity: int, remember: int = 256) -> None:
        if capacity < 1:
            raise ValueError(f'capacity must be >= 1, got {capacity}')
        self.capacity = capacity
        self._waiting: deque[InstructionRequest] = deque()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self._count = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def offer(self, request: InstructionRequest) -> tuple[str, InstructionRequest]:
        """('accepted' | 'duplicate' | 'full', the request with its id: the sender's or a new one)."""
        self._count += 1
        if request.id is None:
            request = InstructionRequest(request.text, f'auto-{self._count}')
        elif request.id in self._seen:
            return 'duplicate', request
        self._seen[request.id] = None
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        if len(self._waiting) >= self.capacity:
            return 'full', request
        self._waiting.append(request)
        return 'accepted', request

    def take(self) -> InstructionRequest | None:
        return self._waiting.popleft() if self._waiting else None


class TwinTime:
    """Time on a simulator's clock (``rosgraph_msgs/Clock``), counted forward only, and its real-time
    factor.

    A step's timeout is about how far the arm could move, and the twin moves in its own time: on a
    loaded machine (real-time factor 0.56 measured) a step timed in wall time failed although the arm
    had had only half its time. A clock that jumps back (a twin restarted for the next scene starts
    at 0) adds nothing; a clock that stops (no twin) stops the step's time too; a jump ahead of more
    than :attr:`MAX_STEP_S` between two messages (the twin publishes every control cycle, 10 ms) adds
    nothing either, so that one message stamped far ahead cannot time every step out.
    """

    RATE_WINDOW_S = 2.0  # wall seconds over which the real-time factor is measured
    MAX_STEP_S = 1.0

    def __init__(self) -> None:
        self.elapsed_s = 0.0
        self._last: float | None = None
        self._marks: deque[tuple[float, float]] = deque()  # (wall, elapsed)

    def update(self, clock_s: float, wall_s: float) -> None:
        if self._last is not None and 0.0 < clock_s - self._last <= self.MAX_STEP_S:
            self.elapsed_s += clock_s - self._last
        self._last = clock_s
        self._marks.append((wall_s, self.elapsed_s))
        while len(self._marks) > 2 and wall_s - self._marks[1][0] >= self.RATE_WINDOW_S:
            self._marks.popleft()

    def real_time_factor(self, wall_s: float) -> float | None:
        """Clock seconds per wall second over the last :attr:`RATE_WINDOW_S` (0 when it stopped)."""
        if len(self._marks) < 2:
            return None
        first_wall, first_elapsed = self._marks[0]
        if wall_s <= first_wall:
            return None
        return (self.elapsed_s - first_elapsed) / (wall_s - first_wall)


def _clean_step(step: str) -> str:
    step = _LIST_ITEM_RE.sub('', step)
    step = _FILLER_RE.sub('', step.strip(' \t,.:;!?-'))
    return re.sub(r'\s+', ' ', step).strip(' \t,.:;!?-')


# "when you have closed the drawer, open the window": the clause is the first step.
_DONE_CLAUSE_RE = re.compile(
    r'^(?:once|when|after)\s+(?:you\s+have|you\s*\'ve|you\s+are\s+done\s+with|you\s+finish(?:ed)?|you)\s+'
    r'(?P<first>[^,]+?),\s*(?P<second>.+)$', re.IGNORECASE)
_PARTICIPLES = {'closed': 'close', 'opened': 'open', 'pressed': 'press', 'pushed': 'push', 'pulled': 'pull',
                'unplugged': 'unplug', 'reached': 'reach', 'turned': 'turn', 'picked': 'pick',
                'placed': 'place', 'slid': 'slide', 'moved': 'move', 'finished': 'finish'}
# The things the skills act on: a step that names none of them and says "it" means the previous step's.
OBJECT_WORDS = ('drawer', 'window', 'door', 'faucet', 'tap', 'peg', 'plug', 'button', 'puck', 'block', 'disc',
                'cube', 'object', 'goal', 'target')
_OBJECT_RE = re.compile(rf'\b({"|".join(OBJECT_WORDS)})s?\b', re.IGNORECASE)
_PRONOUN_RE = re.compile(r'\bit\b', re.IGNORECASE)
# "the window's open; close it": a statement of how things are, context for the step after it.
_STATE_RE = re.compile(
    rf"^(?:the|that|this|my|your)\s+(?:\w+\s+)?(?:{'|'.join(OBJECT_WORDS)})s?\s*(?:'s|\s+is|\s+are)\s+"
    r"(?:still\s+|now\s+|currently\s+|already\s+)?(?:wide\s+|half\s+|all\s+the\s+way\s+)?"
    r"(?:open|closed|shut|on|off|out|in|running|sticking\s+out|pulled\s+out|plugged\s+in)$", re.IGNORECASE)


def split_steps(text: str) -> list[str]:
    """Cut an instruction into its steps, in order; fillers ("first", "please") are dropped.

    Beyond the cues: "when you have closed the drawer, open the window" is two steps in that order; a
    statement of how things are ("the window's open; close it") stays with the step after it; and a
    step that names no object but says "it" ("open the drawer, then close it") means the previous
    step's object.
    """
    pieces: list[str] = []
    for chunk in _HARD_SPLIT_RE.split(text):
        # "1. open the drawer 2. press the button" on one line: break before each inline number.
        for item in _INLINE_NUMBER_RE.split(chunk):
            for piece in _CUE_RE.split(item):
                clause = _DONE_CLAUSE_RE.match(piece.strip())
                if clause:
                    first = clause['first'].split(None, 1)
                    first[0] = _PARTICIPLES.get(first[0].lower(), first[0])
                    pieces += [' '.join(first), clause['second']]
                else:
                    pieces.append(piece)
    steps: list[str] = []
    context = ''
    for step in (_clean_step(p) for p in pieces):
        if not step:
            continue
        if _STATE_RE.match(step):
            context = f'{context}{step}, '
            continue
        steps.append(context + (_resolve_it(step, steps[-1]) if steps else step))
        context = ''
    if context:
        steps.append(context.rstrip(', '))
    return steps


def _resolve_it(step: str, previous: str) -> str:
    """"close it" after "open the drawer" -> "close the drawer"; a step naming an object is kept."""
    if _OBJECT_RE.search(step) or not _PRONOUN_RE.search(step):
        return step
    named = _OBJECT_RE.search(previous.rsplit(', ', 1)[-1]) or _OBJECT_RE.search(previous)
    return _PRONOUN_RE.sub(f'the {named[1].lower()}', step, count=1) if named else step


@dataclass(frozen=True)
class SkillMatch:
    """The best task for one step, with the evidence: its score and the runner-up's."""

    step: str
    task: str
    score: float
    runner_up: str | None
    runner_up_score: float

    @property
    def margin(self) -> float:
        return self.score - self.runner_up_score


@dataclass(frozen=True)
class PlannedStep:
    index: int
    instruction: str
    task: str
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


class _Planner:
    """Validate, split and match an instruction; subclasses say how a step is matched
    (:meth:`match_many`) and what is wrong with a match (:meth:`problems`)."""

    def match_many(self, steps: Sequence[str]) -> list:
        raise NotImplementedError

    def problems(self, match, index: int) -> list[dict]:
        raise NotImplementedError

    def _accepted(self, match) -> bool:
        return not self.problems(match, 0)

    def plan(self, instruction: str | bytes, max_bytes: int = MAX_INSTRUCTION_BYTES,
             max_steps: int = MAX_STEPS) -> list[PlannedStep]:
        """Validate, split and match an instruction; :class:`InstructionRejectedError` lists every problem."""
        text = validate_instruction(instruction, max_bytes)
        steps = split_steps(text)
        if not steps:
            raise InstructionRejectedError([_reason(Reason.EMPTY, 'instruction has no actionable step')])
        steps = self._split_conjunctions(steps)
        if len(steps) > max_steps:
            raise InstructionRejectedError([_reason(
                Reason.TOO_MANY_STEPS, f'instruction has {len(steps)} steps, the limit is {max_steps}')])
        steps, matches = self._join_halves(steps, self.match_many(steps))
        problems = [p for i, m in enumerate(matches) for p in self.problems(m, i)]
        if problems:
            raise InstructionRejectedError(problems)
        # One task twice in a row is one step said in two parts ("pick up the puck; then place it at the
        # goal", "the goal is marked in red; move the hand there"): done once, it is done.
        kept = [m for i, m in enumerate(matches) if i == 0 or m.task != matches[i - 1].task]
        return [PlannedStep(i, m.step, m.task, round(m.score, 4)) for i, m in enumerate(kept)]

    def _join_halves(self, steps: list[str], matches: list) -> tuple[list[str], list]:
        """A step that cannot be read alone but leans to its neighbour's task is read together with it:
        "pick up the puck, then place it at the goal" is one pick-place, though "pick up the puck" alone
        is too unsure. Kept apart when the joined text does not read as that task either."""
        i = 0
        while i < len(steps):
            if not self._accepted(matches[i]) and matches[i].task is not None:
                for j in (i + 1, i - 1):
                    if not (0 <= j < len(steps) and self._accepted(matches[j])
                            and matches[j].task == matches[i].task):
                        continue
                    a, b = min(i, j), max(i, j)
                    (joined,) = self.match_many([f'{steps[a]} and {steps[b]}'])
                    if self._accepted(joined) and joined.task == matches[j].task:
                        steps = [*steps[:a], joined.step, *steps[b + 1:]]
                        matches = [*matches[:a], joined, *matches[b + 1:]]
                        i = a - 1
                        break
            i += 1
        return steps, matches

    def _split_conjunctions(self, steps: list[str]) -> list[str]:
        """"open the drawer and press the button": split at a bare "and" only when that helps.

        A bare "and" often joins parts of one skill ("pick and place the puck"), so a step is split
        there only if every part is a confident match to a different task than its neighbour.
        """
        out: list[str] = []
        for step in steps:
            parts = [p for p in (_clean_step(s) for s in re.split(r'\s+and\s+', step)) if p]
            parts = parts[:1] + [_resolve_it(part, before) for before, part in itertools.pairwise(parts)]
            if len(parts) < 2:
                out.append(step)
                continue
            matches = self.match_many(parts)
            distinct = all(a.task != b.task for a, b in itertools.pairwise(matches))
            if distinct and all(self._accepted(m) for m in matches):
                out.extend(parts)
            else:
                out.append(step)
        return out



class SkillMatcher(_Planner):
    """Maps step texts to tasks by embedding similarity against each task's descriptions.

    ``descriptions``: task name -> natural-language descriptions (e.g.
    ``legion_core.language.load_task_descriptions()``); ``embed``: texts -> unit-norm rows, e.g.
    ``LanguageEncoder().embed``. A task's score for a step is the best cosine over its descriptions.
    A step is accepted when that score reaches ``threshold`` and beats every other task by ``margin``.

    ``allowed``: the tasks the robot can actually do (e.g. the policy's). Steps are still matched
    against *every* described task, so that "open the drawer" is recognised as drawer-open and rejected
    as not learned, instead of landing on the closest allowed skill (drawer-close).
    """

    def __init__(self, descriptions: Mapping[str, Sequence[str]], embed: Callable[[list[str]], np.ndarray],
                 threshold: float = 0.55, margin: float = 0.04, allowed: Sequence[str] | None = None):
        if not descriptions:
            raise ValueError('no task descriptions given: nothing to match instructions against')
        empty = [task for task, texts in descriptions.items() if not texts]
        if empty:
            raise ValueError(f'tasks without descriptions: {", ".join(empty)}')
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f'threshold must be in (0, 1], got {threshold}')
        if not 0.0 <= margin < 1.0:
            raise ValueError(f'margin must be in [0, 1), got {margin}')
        self.tasks = list(descriptions)
        self.allowed = list(self.tasks) if allowed is None else list(allowed)
        unknown = [task for task in self.allowed if task not in descriptions]
        if unknown:
            raise ValueError(f'allowed tasks without descriptions: {", ".join(unknown)}')
        if not self.allowed:
            raise ValueError('no allowed tasks: the robot could not do anything')
        self.threshold = float(threshold)
        self.margin = float(margin)
        self._embed = embed
        texts, owners = [], []
        for task_index, task in enumerate(self.tasks):
            # The task's own name, spelt as words, is one more description ("drawer-open-v3").
            for text in [*descriptions[task], _task_words(task)]:
                texts.append(text)
                owners.append(task_index)
        self._owners = np.asarray(owners)
        self._bank = self._normalised(embed(texts))
        self._aliases = {_normalise_name(task): task for task in self.tasks}
        self._aliases.update({_normalise_name(_task_words(task)): task for task in self.tasks})

    @staticmethod
    def _normalised(vectors) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float64)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)

    def embedding(self, text: str) -> np.ndarray:
        return self._normalised(self._embed([text]))[0].astype(np.float32)

    def scores(self, steps: Sequence[str]) -> np.ndarray:
        """[len(steps), len(tasks)] best cosine of each step against each task's descriptions."""
        similarity = self._normalised(self._embed(list(steps))) @ self._bank.T
        best = np.full((len(steps), len(self.tasks)), -1.0)
        for task_index in range(len(self.tasks)):
            best[:, task_index] = similarity[:, self._owners == task_index].max(axis=1)
        return best

    def match(self, step: str) -> SkillMatch:
        return self.match_many([step])[0]

    def match_many(self, steps: Sequence[str]) -> list[SkillMatch]:
        if not steps:
            return []
        matches = []
        for step, row in zip(steps, self.scores(steps), strict=True):
            alias = self._aliases.get(_normalise_name(step))
            if alias is not None:  # the user named the task itself
                others = [(s, t) for t, s in zip(self.tasks, row, strict=True) if t != alias]
                second = max(others, default=(-1.0, None))
                matches.append(SkillMatch(step, alias, 1.0, second[1], float(second[0])))
                continue
            order = np.argsort(row)[::-1]
            second = order[1] if len(order) > 1 else None
            matches.append(SkillMatch(
                step, self.tasks[order[0]], float(row[order[0]]),
                None if second is None else self.tasks[second],
                -1.0 if second is None else float(row[second])))
        return matches

    def problems(self, match: SkillMatch, index: int) -> list[dict]:
        if match.score < self.threshold:
            return [_reason(
                Reason.UNKNOWN_SKILL,
                f'step {index + 1} "{match.step}": no learned skill matches (best {match.task} '
                f'{match.score:.2f} < threshold {self.threshold:.2f})',
                step=index, text=match.step, best=match.task, score=round(match.score, 4))]
        if match.margin < self.margin:
            return [_reason(
                Reason.AMBIGUOUS,
                f'step {index + 1} "{match.step}" is ambiguous: {match.task} {match.score:.2f} vs '
                f'{match.runner_up} {match.runner_up_score:.2f} (margin {self.margin:.2f} needed)',
                step=index, text=match.step, candidates=[match.task, match.runner_up],
                scores=[round(match.score, 4), round(match.runner_up_score, 4)])]
        return _not_learned(index, match.step, match.task, self.allowed)

@dataclass(frozen=True)
class IntentMatch:
    """What :class:`IntentMatcher` read in one step: ``verdict`` ``task``, ``ambiguous`` (``candidates``,
    likeliest first) or ``off_task`` (``task`` is then only the closest), and its confidence."""

    step: str
    task: str | None
    score: float
    verdict: str
    candidates: tuple[str, ...] = ()


def intent_matcher(encoder, descriptions: Mapping[str, Sequence[str]], allowed: Sequence[str] | None = None,
                   intents_file: str = '') -> IntentMatcher:
    """An :class:`IntentMatcher` for the skills ``allowed`` (None: every task the model knows): the
    intent model fitted on ``intents_file``
    (default: the shipped paraphrases; a few seconds, then cached), ``encoder`` a
    :class:`legion_core.language.LanguageEncoder`. A skill without paraphrases cannot be asked for in
    words: it is left out (``matcher.unworded`` lists it); ValueError when none is left or the data
    cannot be read."""
    from legion_core.intent import load_or_fit

    try:
        model = load_or_fit(encoder.embed, intents_file or None, key=encoder.fingerprint,
                            known_words=encoder.vocabulary())
    except (OSError, ValueError) as error:
        raise ValueError(f'intent model: {error}') from None
    allowed = list(model.tasks) if allowed is None else list(allowed)
    unworded = [task for task in allowed if task not in model.tasks]
    if len(unworded) == len(allowed):
        raise ValueError(f'no paraphrases for any allowed skill ({", ".join(allowed)}) in '
                         f'{model.data.source}')
    matcher = IntentMatcher(model, [task for task in allowed if task not in unworded],
                            {task: texts[0] for task, texts in descriptions.items() if texts})
    matcher.unworded = unworded
    return matcher


class IntentMatcher(_Planner):
    """Maps step texts to tasks with a fitted :class:`legion_core.intent.IntentModel`.

    The model knows every task it has paraphrases for, the opposites of the skills among them, so that
    "open the drawer" is read as drawer-open and refused as not learnt instead of landing on the
    look-alike drawer-close. ``allowed``: the tasks the robot can actually do (e.g. the policy's); each
    needs paraphrases. ``descriptions``: task -> words for it in messages ("did you mean push the puck to
    a goal (push-v3) or ..."); default: the task's name.
    """

    def __init__(self, model, allowed: Sequence[str] | None = None,
                 descriptions: Mapping[str, str] | None = None):
        self.model = model
        self.tasks = list(model.tasks)
        self.allowed = list(self.tasks) if allowed is None else list(allowed)
        unknown = [task for task in self.allowed if task not in self.tasks]
        if unknown:
            raise ValueError(f'allowed tasks without paraphrases: {", ".join(unknown)} (add sentences for '
                             f'them to {model.data.source})')
        if not self.allowed:
            raise ValueError('no allowed tasks: the robot could not do anything')
        self.descriptions = dict(descriptions or {})
        self.unworded: list[str] = []  # skills the robot has that no paraphrase asks for (set by the caller)
        self._aliases = {_normalise_name(task): task for task in self.tasks}
        self._aliases.update({_normalise_name(_task_words(task)): task for task in self.tasks})

    def match_many(self, steps: Sequence[str]) -> list[IntentMatch]:
        steps = list(steps)
        named = {i: self._aliases.get(_normalise_name(step)) for i, step in enumerate(steps)}
        read = iter(self.model.predict([s for i, s in enumerate(steps) if named[i] is None]))
        matches = []
        for i, step in enumerate(steps):
            if named[i] is not None:  # the user named the task itself
                matches.append(IntentMatch(step, named[i], 1.0, 'task'))
                continue
            intent = next(read)
            matches.append(IntentMatch(step, intent.task, float(intent.confidence), intent.verdict,
                                       tuple(intent.candidates)))
        return matches

    def _named(self, task: str) -> str:
        words = self.descriptions.get(task)
        return f'{task} ({words})' if words else task

    def problems(self, match: IntentMatch, index: int) -> list[dict]:
        if match.verdict == 'off_task':
            closest = f' (closest: {match.task}, confidence {match.score:.2f})' if match.task else ''
            return [_reason(
                Reason.UNKNOWN_SKILL, f'step {index + 1} "{match.step}": no learned skill matches{closest}',
                step=index, text=match.step, best=match.task, score=round(match.score, 4))]
        if match.verdict == 'ambiguous':
            names = [self._named(task) for task in match.candidates]
            options = ' or '.join(names) if len(names) < 3 else ', '.join(names[:-1]) + ' or ' + names[-1]
            return [_reason(
                Reason.AMBIGUOUS, f'step {index + 1} "{match.step}" is ambiguous: did you mean {options}?',
                step=index, text=match.step, candidates=list(match.candidates))]
        return _not_learned(index, match.step, match.task, self.allowed)


def _not_learned(index: int, step: str, task: str, allowed: Sequence[str]) -> list[dict]:
    """The refusal of a step that means a skill this robot has not learnt (none when it has)."""
    if task in allowed:
        return []
    return [_reason(Reason.NOT_LEARNED, f'step {index + 1} "{step}" means {task}, which this robot has not '
                    f'learnt (it can: {", ".join(allowed)})', step=index, text=step, task=task)]


def _task_words(task: str) -> str:
    """'drawer-open-v3' -> 'drawer open'."""
    return re.sub(r'[-_ ]v\d+$', '', task).replace('-', ' ').replace('_', ' ')


def _normalise_name(text: str) -> str:
    return re.sub(r'[^a-z0-9]+', ' ', re.sub(r'[-_ ]v\d+$', '', text.lower())).strip()


# ----------------------------------------------------------------------------------------------------
# Sequencer


TERMINAL = {SequenceState.SUCCEEDED, SequenceState.FAILED, SequenceState.REJECTED,
            SequenceState.CANCELLED}


@dataclass
class StepRecord:
    index: int
    instruction: str
    task: str
    score: float = 0.0
    state: StepState = StepState.QUEUED
    started: float | None = None
    ended: float | None = None
    reason: str | None = None
    paused_s: float = 0.0  # how long its clock stood still, pauses that ended
    paused_at: float | None = None  # its clock stands still since then

    @property
    def duration_s(self) -> float | None:
        """The step's own time, from start to end less its pauses."""
        if self.started is None:
            return None
        return None if self.ended is None else round(self.ended - self.started - self.paused_s, 4)

    def elapsed_s(self, now: float) -> float:
        """The step's own time at ``now``: since it started, less its pauses (the one under way too)."""
        held = self.paused_s + (0.0 if self.paused_at is None else now - self.paused_at)
        return now - (self.started if self.started is not None else now) - held

    def unpause(self, now: float) -> None:
        if self.paused_at is not None:
            self.paused_s += max(0.0, now - self.paused_at)
            self.paused_at = None

    def to_dict(self) -> dict:
        return {'index': self.index, 'instruction': self.instruction, 'task': self.task,
                'score': self.score, 'state': self.state.value, 'duration_s': self.duration_s,
                'reason': self.reason, 'paused_s': round(self.paused_s, 4)}


@dataclass
class Sequencer:
    """Runs planned steps one at a time; every method returns the status events it caused.

    Time is passed in (``now``, seconds) so the machine is deterministic under test and runs on ROS
    time in the node. A step that is running for longer than ``step_timeout_s`` fails and the next
    one starts (later steps may still succeed); with ``stop_on_failure`` the sequence ends instead.

    :meth:`pause` stops the active step's clock while the arm cannot move for a reason outside the step
    (sim2real not active: ``waiting`` says why, on every event until :meth:`resume`); a step that starts
    meanwhile starts paused. A paused step does not time out, but a success report, skip, cancel or
    halt still ends it; its ``duration_s`` leaves the pauses out (``paused_s``).
    """

    step_timeout_s: float = 60.0
    stop_on_failure: bool = False
    sequence_id: int = 0
    instruction: str = ''
    instruction_id: str | None = None
    state: SequenceState = SequenceState.IDLE
    steps: list[StepRecord] = field(default_factory=list)
    reasons: list[dict] = field(default_factory=list)
    waiting: dict | None = None  # why the active step's clock stands still (interfaces.Waiting)
    _cursor: int = 0

    def __post_init__(self):
        if not self.step_timeout_s > 0:
            raise ValueError(f'step_timeout_s must be positive, got {self.step_timeout_s}')

    # -- queries -------------------------------------------------------------------------------
    @property
    def active(self) -> StepRecord | None:
        if self.state is SequenceState.RUNNING and self._cursor < len(self.steps):
            return self.steps[self._cursor]
        return None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    def status(self, event: str, **extra) -> dict:
        active = self.active
        return {
            'sequence_id': self.sequence_id, 'instruction_id': self.instruction_id, 'event': event,
            'state': self.state.value, 'instruction': self.instruction,
            'active_index': None if active is None else active.index,
            'steps': [s.to_dict() for s in self.steps], 'reasons': list(self.reasons),
            **({'waiting': dict(self.waiting)} if active is not None and active.paused_at is not None
               and self.waiting is not None else {}),
            **extra}

    # -- commands ------------------------------------------------------------------------------
    def load(self, instruction: str, plan: Sequence[PlannedStep], now: float,
             instruction_id: str | None = None) -> list[dict]:
        """Queue a new plan and start its first step; a sequence still running is cancelled first."""
        events = []
        if self.state in (SequenceState.RUNNING, SequenceState.QUEUED):
            events += self.cancel(now, reason='preempted by a new instruction')
        self.sequence_id += 1
        self.instruction = instruction
        self.instruction_id = instruction_id
        self.steps = [StepRecord(p.index, p.instruction, p.task, p.score) for p in plan]
        self.reasons = []
        self._cursor = 0
        if not self.steps:
            raise ValueError('a plan needs at least one step')
        self.state = SequenceState.QUEUED
        events.append(self.status('queued'))
        self.state = SequenceState.RUNNING
        events += self._start_current(now)
        return events

    def reject(self, instruction: str, reasons: list[dict], instruction_id: str | None = None) -> list[dict]:
        """Record an instruction that could not be planned; a running sequence is left alone."""
        rejected = Sequencer(self.step_timeout_s, sequence_id=self.sequence_id + 1, instruction=instruction,
                             instruction_id=instruction_id, state=SequenceState.REJECTED,
                             reasons=list(reasons))
        self.sequence_id += 1
        return [rejected.status('rejected')]

    def report_success(self, now: float, task: str | None = None, index: int | None = None,
                       sequence_id: int | None = None) -> list[dict]:
        """The task monitor saw the active step succeed. Reports for another step are ignored."""
        active = self.active
        if active is None:
            return []
        if (task is not None and task != active.task) or (index is not None and index != active.index) \
                or (sequence_id is not None and sequence_id != self.sequence_id):
            return []
        return self._end_current(now, StepState.SUCCEEDED, None)

    def tick(self, now: float) -> list[dict]:
        """Time passes: fail the active step if it ran out of time (a paused one does not)."""
        active = self.active
        if active is None or active.started is None or active.paused_at is not None \
                or active.elapsed_s(now) < self.step_timeout_s:
            return []
        held = f' (and {active.paused_s:.1f} s paused)' if active.paused_s > 0 else ''
        return self._end_current(now, StepState.FAILED, f'timed out after {self.step_timeout_s:g} s{held}')

    def pause(self, now: float, waiting: dict) -> list[dict]:
        """Stop the active step's clock (``waiting``: why, an ``interfaces.Waiting``) until :meth:`resume`;
        steps that start meanwhile start paused. An event when the active step's clock stops, and again
        when the reason changes (sim2real inactive, then unconfigured)."""
        changed, self.waiting = waiting != self.waiting, dict(waiting)
        active = self.active
        if active is None or (active.paused_at is not None and not changed):
            return []
        if active.paused_at is None:
            active.paused_at = now
        return [self.status('step_paused', step=active.index)]

    def resume(self, now: float) -> list[dict]:
        """The active step's clock goes on from where it stopped; an event if it was paused."""
        self.waiting = None
        active = self.active
        if active is None or active.paused_at is None:
            return []
        active.unpause(now)
        return [self.status('step_resumed', step=active.index)]

    def skip(self, now: float) -> list[dict]:
        if self.active is None:
            return []
        return self._end_current(now, StepState.SKIPPED, 'skipped on request')

    def halt(self, now: float, reason: str) -> list[dict]:
        """The arm stopped (a latched e-stop): the active step fails with ``reason`` and the rest are
        cancelled whatever ``stop_on_failure`` says, since nothing moves until an operator resets it."""
        if self.active is None:
            return []
        return self._end_current(now, StepState.FAILED, reason, stop=reason)

    def cancel(self, now: float, reason: str = 'cancelled on request') -> list[dict]:
        if self.finished or self.state is SequenceState.IDLE:
            return []
        for step in self.steps[self._cursor:]:
            if step.state is StepState.RUNNING:
                step.unpause(now)
                step.ended = now
            step.state = StepState.CANCELLED
            step.reason = reason
        self.state = SequenceState.CANCELLED
        self.reasons.append({'code': 'cancelled', 'message': reason})
        return [self.status('cancelled')]

    # -- internals -----------------------------------------------------------------------------
    def _start_current(self, now: float) -> list[dict]:
        step = self.steps[self._cursor]
        step.state = StepState.RUNNING
        step.started = now
        step.paused_at = now if self.waiting is not None else None
        return [self.status('step_started')]

    def _end_current(self, now: float, state: StepState, reason: str | None,
                     stop: str | None = None) -> list[dict]:
        """End the active step in ``state``; ``stop``: cancel the steps after it for that reason."""
        step = self.steps[self._cursor]
        step.unpause(now)
        step.state, step.ended, step.reason = state, now, reason
        events = [self.status(f'step_{state.value}', step=step.index)]
        self._cursor += 1
        if stop is None and state is StepState.FAILED and self.stop_on_failure:
            stop = f'step {step.index + 1} failed'
        if stop is not None:
            for rest in self.steps[self._cursor:]:
                rest.state, rest.reason = StepState.CANCELLED, stop
            self._cursor = len(self.steps)
        if self._cursor < len(self.steps):
            return events + self._start_current(now)
        unsuccessful = [s for s in self.steps if s.state is not StepState.SUCCEEDED]
        self.state = SequenceState.FAILED if unsuccessful else SequenceState.SUCCEEDED
        self.reasons = [{'code': s.state.value, 'message': f'step {s.index + 1} ({s.task}) {s.state.value}'
                         + (f': {s.reason}' if s.reason else '')} for s in unsuccessful]
        return [*events, self.status(self.state.value)]
