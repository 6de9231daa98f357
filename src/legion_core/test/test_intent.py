"""The intent model: shipped paraphrases, the speller, and what a user relies on, measured on the
held-out sentences (never fitted on): opposites read right, off-task requests refused, ambiguity asked."""
import numpy as np
import pytest

from legion_core.intent import (
    DEFAULT_HELD_OUT,
    OFF_TASK,
    IntentModel,
    Speller,
    load_held_out,
    load_intent_data,
    normalise,
    validate_intent_data,
)
from legion_core.language import LanguageEncoder
from legion_core.tasks import LEGION10

# Read as the opposite on the held-out set when it was measured (docs/language.md): none. Any
# confusion fails.
KNOWN_OPPOSITE_MISSES: set[str] = set()
# Off-task, read as a task when measured: refused by a legion10 robot (drawer-open is not learnt),
# carried out by one that has learnt drawer-open.
KNOWN_OFF_TASK_MISSES = {'take the drawer apart'}


@pytest.fixture(scope='module')
def encoder():
    return LanguageEncoder()


@pytest.fixture(scope='module')
def model(encoder):
    return IntentModel.fit(load_intent_data(), encoder.embed, known_words=encoder.vocabulary())


@pytest.fixture(scope='module')
def held_out():
    return load_held_out()


# -- data ----------------------------------------------------------------------------------------

def test_shipped_paraphrases_cover_every_skill_and_its_opposite():
    data = load_intent_data()
    for task in LEGION10:
        assert len(data.intents[task]) >= 40, task
    assert len(data.off_task) >= 100
    paired = {t for pair in data.opposites for t in pair}
    assert {'drawer-open-v3', 'drawer-close-v3', 'door-close-v3', 'faucet-close-v3',
            'peg-insert-side-v3'} <= paired
    for opening, closing in data.opposites:
        assert len(data.intents[opening]) >= 30 and len(data.intents[closing]) >= 30


def test_held_out_sentences_never_appear_in_training():
    data, held_out = load_intent_data(), load_held_out()
    texts, _ = data.sentences()
    seen = {normalise(text) for text in texts}
    measured = [t for texts in held_out.steps.values() for t in texts] + held_out.off_task
    measured += [text for text, _ in held_out.ambiguous] + [text for text, _ in held_out.sequences]
    assert not [t for t in measured if normalise(t) in seen]
    assert sum(len(t) for t in held_out.steps.values()) >= 140 and len(held_out.off_task) >= 30
    assert all(len(held_out.steps[task]) >= 10 for task in LEGION10)


@pytest.mark.parametrize(('data', 'message'), [
    ({'off_task': ['x'] * 10}, 'intents'),
    ({'intents': {'reach-v3': ['reach'] * 10}, 'off_task': ['no'] * 10, 'extra': 1}, 'unknown keys'),
    ({'intents': {'reach-v3': ['reach the goal'] * 3}, 'off_task': ['hello'] * 10}, 'at least 10'),
    ({'intents': {'reach-v3': ['reach'] * 9 + [True]}, 'off_task': ['hi'] * 10}, 'quote yes/no'),
    ({'intents': {'reach-v3': [f'reach {i}' for i in range(10)]}, 'off_task': ['reach 1'] * 10},
     'is both'),
    ({'intents': {'reach-v3': [f'reach {i}' for i in range(10)]}, 'off_task': ['hi'] * 10,
      'opposites': [['reach-v3', 'push-v3']]}, 'not a pair'),
    ({'intents': {'reach-v3': [f'reach {i}' for i in range(10)]}, 'off_task': ['hi'] * 10,
      'ambiguous': [{'text': 'go', 'candidates': ['reach-v3']}]}, 'two or more'),
])
def test_bad_data_is_refused_with_the_reason(data, message):
    with pytest.raises(ValueError, match=message):
        validate_intent_data(data, 'test.yaml')


# -- speller -------------------------------------------------------------------------------------

def test_speller_mends_typos_and_leaves_words_and_nonsense_alone(encoder):
    speller = Speller(load_intent_data().sentences()[0], encoder.vocabulary())
    assert speller('opne teh windwo') == 'open the window'
    assert speller('clsoe the drawr') == 'close the drawer'
    assert speller('pikc up the puk') == 'pick up the puck'
    assert speller('unplgu the pge') == 'unplug the peg'
    assert speller('Wash the window, please!') == 'Wash the window, please!'
    assert speller('zxcvbnm qwfpgj') == 'zxcvbnm qwfpgj'


# -- reading requests ----------------------------------------------------------------------------

def test_held_out_requests_read_as_meant(model, held_out):
    rows = [(text, task) for task, texts in held_out.steps.items() for text in texts]
    intents = model.predict([text for text, _ in rows])
    right = [i.accepted and i.task == task for i, (_, task) in zip(intents, rows, strict=True)]
    misses = [(i.text, i.verdict, i.task) for i, ok in zip(intents, right, strict=True) if not ok]
    assert np.mean(right) >= 0.95, misses


def test_opposites_are_never_read_as_each_other(model, held_out):
    opposite = {a: b for a, b in model.opposites} | {b: a for a, b in model.opposites}
    rows = [(text, task) for task, texts in held_out.steps.items() if task in opposite for text in texts]
    intents = model.predict([text for text, _ in rows])
    confused = {i.text for i, (_, task) in zip(intents, rows, strict=True) if i.task == opposite[task]
                and i.verdict != 'off_task'}
    assert confused <= KNOWN_OPPOSITE_MISSES
    # The issue's own examples: the opposite's words, this task's meaning.
    said = {'push the drawer back in': 'drawer-close-v3',
            'turn the faucet handle to open it': 'faucet-open-v3',
            'move the window back to closed': 'window-close-v3',
            'pull the peg out sideways': 'peg-unplug-side-v3',
            'close the door': 'door-close-v3', 'open the door': 'door-open-v3'}
    assert {i.text: i.task for i in model.predict(list(said))} == said


def test_every_off_task_request_is_refused(model, held_out):
    read = [i for i in model.predict(held_out.off_task) if i.accepted]
    assert not [(i.text, i.task) for i in read if i.task in LEGION10]  # a legion10 robot does none
    assert {i.text for i in read} <= KNOWN_OFF_TASK_MISSES


def test_ambiguity_asks_which_one(model, held_out):
    intents = model.predict([text for text, _ in held_out.ambiguous])
    asked = [i.verdict == 'ambiguous' and set(c) <= set(i.candidates)
             for i, (_, c) in zip(intents, held_out.ambiguous, strict=True)]
    assert sum(asked) >= len(asked) - 1, [(i.text, i.verdict, i.candidates) for i in intents]
    (open_it,) = model.predict(['open it'])
    assert open_it.verdict == 'ambiguous' and len(open_it.candidates) >= 2


def test_thresholds_are_tuned_on_training_data_only(model):
    assert DEFAULT_HELD_OUT.is_file() and 'held_out' not in model.data.source
    assert 0.0 <= model.thresholds.family_margin <= 0.7 and 0.2 <= model.thresholds.min_confidence <= 0.8
    assert model.cross_validation['accuracy'] >= 0.9 and model.cross_validation['off_task_refused'] >= 0.9
    assert OFF_TASK not in model.tasks
