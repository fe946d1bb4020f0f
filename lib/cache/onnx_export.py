"""Install-time ONNX export of the embedding model (``python -m lib.cache.embedder export-onnx``): encoder +
mean pooling + L2 normalisation in one graph, fused by onnxruntime's transformer optimizer when that
verifies, checked against sentence-transformers. Never imported on the request path (it imports torch).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import tempfile
from typing import Sequence

import numpy as np

from lib.cache.embedder import (
    EXPORT_FORMAT,
    Embedder,
    _set_offline,
    default_onnx_path,
    export_is_current,
    find_model_path,
    read_export_source,
    weights_fingerprint,
)

log = logging.getLogger("aiproxy.cache.embedder")


_CHECK_TEXTS = (
    "hi",
    "Summarize this support ticket in two sentences.",
    "Translate from English to German: Please find the invoice for March attached; payment is due in 30 days.",
    "word " * 300,  # longer than the model reads: checks truncation too
)


def _fuse_onnx(source: str, target: str, num_heads: int, hidden_size: int) -> dict[str, int]:
    """Fuse the BERT graph at ``source`` with onnxruntime's transformer optimizer and write it to ``target``.

    Python-level fusions only (``opt_level=0``): the file stays portable, and onnxruntime applies its own
    graph optimizations when a session opens it. Returns the counts of fused operators. Raises
    ``RuntimeError`` when no attention was fused, and whatever the optimizer raises.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(source, model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                               opt_level=0, use_gpu=False)
    stats = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}
    if not stats.get("Attention") and not stats.get("MultiHeadAttention"):
        raise RuntimeError(f"the transformer optimizer fused no attention ({stats})")
    optimized.save_model_to_file(target)
    return stats


def export_onnx(
    model_path: str | None = None, target: str | None = None, *, verify: bool = True, fuse: bool = True
) -> str:
    """Export the model (encoder + mean pooling + L2 normalisation) to ONNX; return the file's path.

    Run at install/build time, never per request: it imports torch and takes several seconds. The encoder
    is exported with eager attention and, with ``fuse``, rewritten by onnxruntime's transformer optimizer
    (fused Attention / EmbedLayerNormalization / SkipLayerNormalization / BiasGelu, still fp32). With
    ``verify`` each candidate is compared with sentence-transformers on a few texts (batched, so padding
    and truncation are covered); a fused graph that fails to build or disagrees (any cosine below 0.9999)
    is dropped for the unfused one. The file is written atomically to ``target`` (default
    :func:`default_onnx_path`), then its ``.source`` file (weights fingerprint, :data:`EXPORT_FORMAT`,
    whether it is fused). Raises ``RuntimeError`` when the unfused export fails verification too,
    ``OSError`` when the target is not writable.
    """
    _set_offline()
    import torch
    from transformers import AutoModel

    model_path = model_path or find_model_path()
    target = target or default_onnx_path(model_path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:  # eager attention exports as plain MatMul/Softmax, the pattern the optimizer fuses
        model = AutoModel.from_pretrained(model_path, attn_implementation="eager").eval()
    except (TypeError, ValueError):  # pragma: no cover - transformers without attn_implementation
        model = AutoModel.from_pretrained(model_path).eval()

    class _Pooled(torch.nn.Module):
        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    dummy = torch.tensor([[101, 7592, 2088, 102]], dtype=torch.long)
    tmp_dir = tempfile.mkdtemp(prefix=".export-", dir=os.path.dirname(target))
    raw = os.path.join(tmp_dir, "raw.onnx")
    fused = os.path.join(tmp_dir, "fused.onnx")
    try:
        import warnings

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Pooled(model),
                (dummy, torch.ones_like(dummy), torch.zeros_like(dummy)),
                raw,
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["sentence_embedding"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "seq"},
                    "attention_mask": {0: "batch", 1: "seq"},
                    "token_type_ids": {0: "batch", 1: "seq"},
                    "sentence_embedding": {0: "batch"},
                },
                opset_version=17,
                dynamo=False,
            )
        candidates = [raw]
        if fuse:
            try:
                stats = _fuse_onnx(raw, fused, int(model.config.num_attention_heads), int(model.config.hidden_size))
                log.info("fused ONNX graph: %s", stats)
                candidates.insert(0, fused)
            except Exception as exc:  # noqa: BLE001 - any optimizer failure: the unfused export is still correct
                log.warning("ONNX graph fusion failed (%s); keeping the unfused export", exc)
        del model
        chosen = None
        reference = Embedder(model_path, backend="torch", memo_size=0).embed_batch(_CHECK_TEXTS) if verify else None
        for candidate in candidates:
            if reference is not None:
                vecs = Embedder(model_path, backend="onnx", onnx_path=candidate, memo_size=0).embed_batch(_CHECK_TEXTS)
                worst = float(np.min(np.sum(vecs * reference, axis=1)))
                if worst < 0.9999:
                    if candidate == fused:
                        log.warning("fused ONNX graph disagrees with sentence-transformers (cosine %.6f); "
                                    "keeping the unfused export", worst)
                        continue
                    raise RuntimeError(f"ONNX export disagrees with sentence-transformers (cosine {worst:.6f})")
            if reference is not None:
                log.info("%s ONNX export agrees with sentence-transformers (worst cosine %.6f)",
                         "fused" if candidate == fused else "unfused", worst)
            chosen = candidate
            break
        assert chosen is not None
        os.chmod(chosen, 0o644)  # mkdtemp makes it private; workers may run as another user
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target + ".source")  # no window where an old .source vouches for a new file
        os.replace(chosen, target)
        source_tmp = os.path.join(tmp_dir, "source")
        with open(source_tmp, "w", encoding="ascii") as f:
            f.write(f"{weights_fingerprint(model_path)}\nformat={EXPORT_FORMAT}\n"
                    f"fused={'yes' if chosen == fused else 'no'}\n")
        os.chmod(source_tmp, 0o644)
        os.replace(source_tmp, target + ".source")
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``export-onnx [--target PATH] [--force] [--no-fuse]`` or ``info``. Returns the exit status.

    ``export-onnx`` does nothing when the export is current (same weights, same :data:`EXPORT_FORMAT`);
    an export from other weights or an older format is re-made.
    """
    parser = argparse.ArgumentParser(prog="python -m lib.cache.embedder")
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export-onnx", help="export all-MiniLM-L6-v2 to ONNX (install time)")
    exp.add_argument("--target", default=None)
    exp.add_argument("--force", action="store_true", help="re-export even when the file is current")
    exp.add_argument("--no-fuse", action="store_true", help="skip onnxruntime's graph fusion (slower file)")
    sub.add_parser("info", help="print the model path, the ONNX path and which backend auto picks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model_path = find_model_path()
    if args.command == "export-onnx":
        target = args.target or default_onnx_path(model_path)
        if export_is_current(model_path, target) and not args.force:
            print(f"ONNX export already present and current: {target}")
            return 0
        export_onnx(model_path, target, fuse=not args.no_fuse)
        fused = read_export_source(target).get("fused") == "yes"
        print(f"exported and verified ({'fused' if fused else 'unfused'}): {target}")
        return 0
    emb = Embedder(model_path)
    onnx_file = default_onnx_path(model_path)
    info = read_export_source(onnx_file)
    status = "current" if export_is_current(model_path, onnx_file) else \
        "older format" if export_is_current(model_path, onnx_file, any_format=True) else \
        "stale" if os.path.isfile(onnx_file) else "missing"
    print(f"model: {model_path}\nonnx: {onnx_file} ({status}; format {info.get('format', '-')}, "
          f"fused {info.get('fused', 'no')})\nbackend: {emb.load()}")
    return 0
