"""Regenerate ``openai-schemas.json``: the schemas the conformance tests validate against, with every schema
they reference, cut from OpenAI's OpenAPI description (MIT; see ``openai-openapi.LICENSE``).

    python tests/specs/extract.py ../shared/specs/openai-openapi.yaml

The whole description is 3 MB of YAML; the tests need ~1 % of it, and vendoring the extract means they run
(and fail when they should) on a machine without ``../shared``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOTS = ("CreateChatCompletionResponse", "CreateChatCompletionStreamResponse", "CreateEmbeddingResponse",
         "ListModelsResponse", "Model", "ErrorResponse", "Response", "ResponseStreamEvent")
SOURCE = "openai/openai-openapi at commit f85dbe2 (2026-08-21), components.schemas"
OUT = Path(__file__).with_name("openai-schemas.json")


def referenced(node: object, found: set[str]) -> None:
    """Add the name of every ``#/components/schemas/<name>`` that ``node`` refers to, to ``found``."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[-1])
        for value in node.values():
            referenced(value, found)
    elif isinstance(node, list):
        for value in node:
            referenced(value, found)


def main(path: str) -> None:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    schemas = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=loader)["components"]["schemas"]
    todo, keep = list(ROOTS), set()
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        found: set[str] = set()
        referenced(schemas[name], found)
        todo.extend(found - keep)
    doc = {"source": SOURCE, "roots": list(ROOTS),
           "components": {"schemas": {name: schemas[name] for name in sorted(keep)}}}
    OUT.write_text(json.dumps(doc, indent=0, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(keep)} schemas")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/specs/openai-openapi.yaml")
