"""One Hugging Face causal LM from a local directory, on the CPU, generating one request at a time.

``LocalModel(path).load()`` reads the tokenizer and weights with ``transformers`` (``local_files_only``:
nothing is ever downloaded). ``generate(request, emit, cancelled)`` applies the tokenizer's chat template (or
``simple_template`` when it has none), honours ``max_tokens`` (clamped to the context left), ``temperature``
/ ``top_p`` (sampling when the temperature is above 0; greedy at 0; the model's own generation config when
unset), ``seed`` and ``stop``, and hands text to ``emit`` as it is decoded (``TextStreamer`` decides where a
piece of text is final, so multi-byte characters and word pieces are never split).

Stop strings are matched on the decoded text: text that could be the start of a stop string is held back
until it is known not to be, so a stop string never reaches the client. Generation ends at the end-of-
sequence token, a stop string, ``max_tokens``, or when ``cancelled`` is set (the client went away).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("aiproxy.providers.local")

DEFAULT_MAX_TOKENS = 256


class GenerationError(Exception):
    """A request the model cannot serve: ``code`` and ``status`` say how (400 context_length_exceeded …)."""

    def __init__(self, message: str, code: str = "failed", status: int = 500) -> None:
        super().__init__(message)
        self.message, self.code, self.status = message, code, status


def simple_template(messages: list[dict[str, str]]) -> str:
    """A plain chat prompt for tokenizers without a chat template: ``role: text`` lines, then ``assistant:``."""
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join(lines + ["assistant:"])


class StopMatcher:
    """Cuts decoded text at the first stop string; holds back a tail that may still become one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.buffer = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The part of ``text`` (with what was held back) that is safe to send now."""
        if self.stopped:
            return ""
        self.buffer += text
        hits = [self.buffer.find(s) for s in self.stops if s in self.buffer]
        if hits:
            self.stopped = True
            out, self.buffer = self.buffer[:min(hits)], ""
            return out
        hold = max((n for s in self.stops for n in range(min(len(s) - 1, len(self.buffer)), 0, -1)
                    if self.buffer.endswith(s[:n])), default=0)
        out, self.buffer = self.buffer[:len(self.buffer) - hold], self.buffer[len(self.buffer) - hold:]
        return out

    def flush(self) -> str:
        out, self.buffer = ("" if self.stopped else self.buffer), ""
        return out


class LocalModel:
    """A causal LM and its tokenizer from ``path`` (see the module docstring). Not thread-safe: one
    ``generate`` at a time (``lib.providers.local_server.Scheduler`` runs them in turn)."""

    def __init__(self, path: str, *, threads: int | None = None, max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        self.path = str(path)
        self.threads = threads
        self.max_tokens = max_tokens
        self.tokenizer: Any = None
        self.model: Any = None
        self.context = 2048
        self._lock = threading.Lock()

    def load(self) -> "LocalModel":
        """Load tokenizer and weights (once). Raises ``OSError`` / ``ValueError`` for a directory that holds none."""
        with self._lock:
            if self.model is not None:
                return self
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            if not (Path(self.path) / "config.json").is_file():
                raise OSError(f"no model (config.json) in {self.path}")
            if self.threads:
                torch.set_num_threads(self.threads)
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(self.path, local_files_only=True, dtype=torch.float32)
            model.eval()
            config = model.config
            self.context = int(getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
                               or 2048)
            self.model = model
            log.info("local model loaded from %s (%d parameters, context %d)", self.path,
                     sum(p.numel() for p in model.parameters()), self.context)
            return self

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The token ids of the chat prompt for ``messages`` (role/content text pairs)."""
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return list(tok(text, add_special_tokens=False)["input_ids"])
        return list(tok(simple_template(messages))["input_ids"])

    def generate(self, request: dict[str, Any], emit: Callable[[str], None], cancelled: threading.Event) -> dict[str, Any]:
        """Generate for ``request`` (``messages``, ``max_tokens``, ``temperature``, ``top_p``, ``stop``, ``seed``),
        calling ``emit(text)`` for each final piece. Returns ``{"finish", "prompt_tokens", "completion_tokens"}``.
        Raises ``GenerationError`` (400) when the prompt leaves no room in the context."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

        self.load()
        ids = self.prompt_ids(request.get("messages") or [])
        room = self.context - len(ids)
        if room <= 0:
            raise GenerationError(f"The prompt is {len(ids)} tokens; this model's context is {self.context}.",
                                  "context_length_exceeded", 400)
        wanted = int(request.get("max_tokens") or self.max_tokens)
        limit = max(1, min(wanted, room))
        matcher = StopMatcher(list(request.get("stop") or []))
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        state = {"count": 0, "last": None}

        class Streamer(TextStreamer):
            def put(self, value: Any) -> None:
                if not self.next_tokens_are_prompt:
                    tokens = value.reshape(-1).tolist()
                    state["count"] += len(tokens)
                    state["last"] = tokens[-1] if tokens else state["last"]
                super().put(value)

            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                piece = matcher.feed(text)
                if stream_end:
                    piece += matcher.flush()
                if piece:
                    emit(piece)

        class Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), bool(matcher.stopped or cancelled.is_set()), dtype=torch.bool)

        options: dict[str, Any] = {"max_new_tokens": limit}
        temperature = request.get("temperature")
        if temperature is not None:
            options["do_sample"] = float(temperature) > 0
            if options["do_sample"]:
                options["temperature"] = float(temperature)
        if request.get("top_p") is not None and options.get("do_sample", self.model.generation_config.do_sample):
            options["top_p"] = float(request["top_p"])
        if request.get("seed") is not None:
            torch.manual_seed(int(request["seed"]))
        input_ids = torch.tensor([ids], dtype=torch.long)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else next(iter(eos_ids), 0)
        with torch.inference_mode():
            self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), pad_token_id=pad,
                                streamer=Streamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True),
                                stopping_criteria=StoppingCriteriaList([Stop()]), **options)
        count = state["count"] - (1 if state["last"] in eos_ids else 0)
        if matcher.stopped or state["last"] in eos_ids:
            finish = "stop"
        else:
            finish = "length" if state["count"] >= limit else "stop"
        return {"finish": finish, "prompt_tokens": len(ids), "completion_tokens": max(0, count)}
