"""The sandbox's schema instances are valid (checked with ``jsonschema``) and deterministic; ingress refuses
schemas that are not JSON Schema."""

from __future__ import annotations

import jsonschema
import pytest

from lib.protocols.structured import check_json_schema_format, schema_problem
from lib.providers.schema_instance import instance

SCHEMAS = [
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    {"type": "object", "additionalProperties": False, "required": ["n", "unit", "tags", "when", "ok", "nothing"],
     "properties": {"n": {"type": "integer", "minimum": 3, "maximum": 9, "multipleOf": 2},
                    "unit": {"enum": ["C", "F"]}, "tags": {"type": "array", "items": {"type": "string", "minLength": 3},
                                                          "minItems": 2, "uniqueItems": True},
                    "when": {"type": "string", "format": "date-time"}, "ok": {"type": "boolean"},
                    "nothing": {"type": "null"}}},
    {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, "minItems": 3},
    {"type": ["string", "null"], "maxLength": 3},
    {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"x": {"const": 7}}, "required": ["x"]}]},
    {"allOf": [{"properties": {"a": {"type": "boolean"}}}, {"required": ["b"], "properties": {"b": {"const": "y"}}}]},
    {"$defs": {"P": {"type": "object", "properties": {"name": {"type": "string"}, "kids": {
        "type": "array", "items": {"$ref": "#/$defs/P"}, "maxItems": 1}}, "required": ["name"]}}, "$ref": "#/$defs/P"},
    {"type": "object", "minProperties": 2, "additionalProperties": {"type": "integer"}},
    {"type": "object"},
    {},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
def test_instance_is_valid_and_deterministic(schema):
    value = instance(schema, "Paris")
    jsonschema.validate(value, schema)
    assert instance(schema, "Paris") == value


def test_the_first_string_is_the_users_text():
    assert instance(SCHEMAS[0], "Paris") == {"city": "Paris"}


@pytest.mark.parametrize("schema,ok", [({"type": "object"}, True), ({"type": "objekt"}, False),
                                       ({"properties": {"a": {"minimum": "three"}}}, False), ([], False)])
def test_schema_problem(schema, ok):
    assert (schema_problem(schema) is None) is ok


def test_check_json_schema_format_names_the_problem():
    check_json_schema_format({"name": "ok_name-1", "schema": {"type": "object"}})
    with pytest.raises(ValueError, match="name"):
        check_json_schema_format({"name": "has spaces", "schema": {"type": "object"}})
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        check_json_schema_format({"name": "x", "schema": {"type": "objekt"}})
    # a cached verdict for one schema never answers for another that hashes alike (true == 1 in Python)
    check_json_schema_format({"name": "x", "schema": {"type": "object", "additionalProperties": True}})
    with pytest.raises(ValueError):
        check_json_schema_format({"name": "x", "schema": {"type": "object", "additionalProperties": 1}})
