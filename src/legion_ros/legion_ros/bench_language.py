"""``legion bench language``: how well free text is mapped to skills, on sentences never fitted on.

The held-out sentences (``legion_core/data/intents/held_out.yaml``) are planned exactly as the
instruction node plans an instruction (validation, splitting, matching), for a robot that has the
legion10 skills (``--skills`` to change that). A step's *reading* is the task the matcher took it for
(carried out, or refused as not learnt: it was understood), ``ambiguous`` or ``off-task``. Reported:

* ``accuracy``: held-out single-step requests read as the task they mean (the opposite tasks the
  robot has not learnt included: those must be read as themselves, then refused);
* ``opposite_confusions``: requests read as the opposite of what they mean, per pair;
* ``reject``: precision and recall of refusing off-task requests, among the off-task requests and
  the requests for the robot's skills (a refusal is anything not carried out: refused as no skill,
  as ambiguous, or as a task the robot has not learnt); ``read_as_a_task``: off-task requests read
  as some task all the same (carried out by a robot that has learnt it);
* ``ambiguous``: requests that could mean two tasks, answered "did you mean" with both;
* ``sequences``: multi-step instructions planned into exactly their tasks;
* ``latency_ms``: one step, from text to reading, the sentence embedding computed (not cached);
* ``baseline_similarity``: the same measurements for the earlier cosine-similarity rule
  (:class:`legion_ros.instructions.SkillMatcher`), side by side.

Pure Python, no ROS: runs in seconds once the training sentences' embeddings are cached.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence

EPILOG = """\
examples:
  legion bench language                          the shipped model on the shipped held-out sentences
  legion bench language --skills reach-v3 drawer-close-v3 window-close-v3   as the shipped policy knows
  legion bench language --no-baseline --misses   without the old rule; list every held-out miss
"""

OFF = 'off-task'
AMBIGUOUS = 'ambiguous'


def register_bench_language(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        'language', help='instructions to skills: held-out accuracy, opposites, refusals, latency (JSON)',
        description='Plan every held-out sentence as the instruction node does and print one JSON object:\n'
                    'accuracy on held-out single steps, confusions between opposite tasks, precision and\n'
                    'recall of refusing off-task requests, "did you mean" on ambiguous ones, multi-step\n'
                    'instructions, and the latency of one step. Goal: accuracy >= 0.95, no opposite\n'
                    'confusion, every off-task request refused.',
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--held-out', default=None, metavar='YAML',
                        help='held-out sentences (default: legion_core/data/intents/held_out.yaml)')
    parser.add_argument('--train', default=None, metavar='YAML',
                        help='paraphrases to fit on (default: legion_core/data/intents/train.yaml)')
    parser.add_argument('--skills', nargs='+', default=None, metavar='TASK',
                        help='the robot\'s skills (default: the legion10 stream)')
    parser.add_argument('--latency-steps', type=int, default=40, metavar='N',
                        help='steps timed with uncached embeddings (default 40)')
    parser.add_argument('--no-baseline', action='store_true', help='skip the cosine-similarity rule')
    parser.add_argument('--misses', action='store_true', help='list every held-out sentence read wrong')
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from legion_core.intent import load_held_out
    from legion_core.language import LanguageEncoder
    from legion_core.tasks import LEGION10

    torch.set_num_threads(1)  # as the instruction node does (one sentence at a time, shared cores)
    try:
        held_out = load_held_out(args.held_out)
        encoder = LanguageEncoder()
        started = time.perf_counter()
        matcher = intent_matcher(encoder, args.train)
        fit_s = time.perf_counter() - started
    except (OSError, ValueError) as error:
        print(f'legion bench language: {error}', file=sys.stderr)
        return 2
    skills = list(args.skills or LEGION10)
    unknown = [task for task in skills if task not in matcher.tasks]
    if unknown:
        print(f'legion bench language: no paraphrases for {unknown}; the model knows {matcher.tasks}',
              file=sys.stderr)
        return 2
    model = matcher.model
    result = {
        'model': 'intent: family (logistic regression over MiniLM embedding + char n-grams), then the '
                 'direction of opposite pairs (pooled logistic regression)',
        'train': {'path': model.data.source, 'sentences': len(model.data.sentences()[0]),
                  'tasks': len(model.tasks), 'fit_s': round(fit_s, 2),
                  'thresholds': vars(model.thresholds), 'cross_validation': model.cross_validation},
        'skills': skills,
        'held_out': evaluate(matcher, held_out, skills, misses=args.misses),
        'latency_ms': latency(matcher, held_out, args.latency_steps),
    }
    if not args.no_baseline:
        result['baseline_similarity'] = evaluate(similarity_matcher(encoder), held_out, skills,
                                                 misses=args.misses)
    print(json.dumps(result))
    return 0


def intent_matcher(encoder, train: str | None = None, allowed: Sequence[str] | None = None):
    from legion_core.language import load_task_descriptions
    from legion_ros import instructions

    return instructions.intent_matcher(encoder, load_task_descriptions(), allowed, train or '')


def similarity_matcher(encoder):
    from legion_core.language import load_task_descriptions
    from legion_ros.instructions import SkillMatcher

    return SkillMatcher(load_task_descriptions(), encoder.embed)  # the node's former defaults


def reading(matcher, text: str) -> tuple[str | list[str], list[str]]:
    """(what the planner took ``text`` for: a task or the tasks of its steps, ``ambiguous``,
    ``off-task``; the candidates when ambiguous). Every task is allowed here: refusing one as not
    learnt is the caller's business."""
    from legion_ros.instructions import InstructionRejectedError

    try:
        plan = matcher.plan(text)
    except InstructionRejectedError as error:
        codes = [r['code'] for r in error.reasons]
        if 'ambiguous' in codes:
            return AMBIGUOUS, list(error.reasons[codes.index('ambiguous')].get('candidates', []))
        return OFF, []
    tasks = [step.task for step in plan]
    return (tasks[0] if len(tasks) == 1 else tasks), []


def evaluate(matcher, held_out, skills: Sequence[str], misses: bool = False) -> dict:
    """The measurements of the module docstring for ``matcher`` on ``held_out``."""
    pairs = _pairs(matcher)
    opposite = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    rows = [(text, task) for task, texts in held_out.steps.items() for text in texts]
    read = [reading(matcher, text)[0] for text, _ in rows]
    right = [r == task for r, (_, task) in zip(read, rows, strict=True)]
    confusions = {f'{a}|{b}': {'a_as_b': 0, 'b_as_a': 0} for a, b in pairs}
    for r, (_, task) in zip(read, rows, strict=True):
        if task in opposite and r == opposite[task]:
            pair = next(p for p in pairs if task in p)
            confusions[f'{pair[0]}|{pair[1]}']['a_as_b' if task == pair[0] else 'b_as_a'] += 1
    per_task = {task: round(sum(ok for ok, (_, t) in zip(right, rows, strict=True) if t == task)
                            / len(texts), 3) for task, texts in held_out.steps.items()}
    # Refusals, for a robot with ``skills``: not carried out = not read as one of its skills.
    off_read = [reading(matcher, text)[0] for text in held_out.off_task]
    carried = lambda r: isinstance(r, str) and r in skills  # noqa: E731
    skill_rows = [(r, task) for r, (_, task) in zip(read, rows, strict=True) if task in skills]
    refused_off = sum(not carried(r) for r in off_read)
    refused_skill = sum(not carried(r) for r, _ in skill_rows)
    ambiguous = []
    for text, candidates in held_out.ambiguous:
        r, offered = reading(matcher, text)
        ambiguous.append(r == AMBIGUOUS and set(candidates) <= set(offered))
    sequences = [reading(matcher, text)[0] == tasks for text, tasks in held_out.sequences]
    skill_right = [ok for ok, (_, task) in zip(right, rows, strict=True) if task in skills]
    out = {
        'steps': len(rows), 'accuracy': round(sum(right) / len(rows), 4),
        'accuracy_skills': round(sum(skill_right) / max(len(skill_right), 1), 4),
        'per_task': per_task,
        'opposite_confusions': sum(c['a_as_b'] + c['b_as_a'] for c in confusions.values()),
        'opposite_pairs': confusions,
        'reject': {'off_task': len(off_read),
                   'precision': round(refused_off / max(refused_off + refused_skill, 1), 4),
                   'recall': round(refused_off / max(len(off_read), 1), 4),
                   'skill_requests_refused': refused_skill,
                   # for a robot with every skill: off-task requests read as some task
                   'read_as_a_task': sum(isinstance(r, str) and r not in (OFF, AMBIGUOUS) for r in off_read)},
        'ambiguous': {'n': len(ambiguous), 'asked': sum(ambiguous)},
        'sequences': {'n': len(sequences), 'exact': sum(sequences)},
    }
    if misses:
        out['misses'] = [{'text': text, 'means': task, 'read': r} for r, (text, task) in
                         zip(read, rows, strict=True) if r != task]
        out['misses'] += [{'text': text, 'means': OFF, 'read': r} for r, text in
                          zip(off_read, held_out.off_task, strict=True) if carried(r)]
        out['misses'] += [{'text': text, 'means': tasks, 'read': reading(matcher, text)[0]}
                          for ok, (text, tasks) in zip(sequences, held_out.sequences, strict=True) if not ok]
    return out


def _pairs(matcher) -> list[tuple[str, str]]:
    model = getattr(matcher, 'model', None)
    if model is not None:
        return list(model.opposites)
    from legion_core.intent import load_intent_data

    return list(load_intent_data().opposites)


def latency(matcher, held_out, steps: int) -> dict:
    """Milliseconds for one step from text to reading: uncached (the sentence model runs) and with
    the embedding already cached (the classifiers alone)."""
    from legion_core.language import LanguageEncoder

    texts = [t for texts in held_out.steps.values() for t in texts][:max(steps, 1)]
    with tempfile.TemporaryDirectory(prefix='legion-bench-language-') as cache:
        fresh = LanguageEncoder(cache_dir=cache)
        fresh.embed(['warm the model up'])
        timed = matcher.model.with_embed(fresh.embed)
        cold, warm = [], []
        for text in texts:
            started = time.perf_counter()
            timed.predict([text])
            cold.append((time.perf_counter() - started) * 1000.0)
            started = time.perf_counter()
            timed.predict([text])
            warm.append((time.perf_counter() - started) * 1000.0)
    cold.sort()
    return {'steps': len(cold), 'median': round(statistics.median(cold), 2),
            'p95': round(cold[min(len(cold) - 1, int(0.95 * len(cold)))], 2), 'max': round(cold[-1], 2),
            'classifier_median': round(statistics.median(warm), 2)}
