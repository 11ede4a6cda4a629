"""Write docs/openapi.md, the HTTP API's reference, from the OpenAPI document the app itself serves at
/openapi.json, so it cannot go stale (tests/test_docs.py fails when the committed page differs from
what this prints).

    python tools/gen_openapi.py > docs/openapi.md
"""

from __future__ import annotations

import json
import sys
from typing import Any

from taskq_cli.api import create_app

HEADER = """# HTTP API reference

Generated from the OpenAPI document `taskq api` serves at `/openapi.json`, by
`python tools/gen_openapi.py > docs/openapi.md`; do not edit by hand. How to run the API, its security
rules, errors and measured rates are in [the HTTP API guide](api.md).
"""

METHODS = ("get", "post", "put", "patch", "delete")


def main() -> None:
    doc = create_app().openapi()
    sys.stdout.write(render(doc))


def render(doc: dict[str, Any]) -> str:
    parts = [HEADER, f"\n{doc['info'].get('description', '').strip()}\n"]
    for path, operations in doc["paths"].items():
        for method in METHODS:
            if method in operations:
                parts.append(operation(method, path, operations[method]))
    schemas = doc.get("components", {}).get("schemas", {})
    if schemas:
        parts.append("\n## Schemas\n")
        parts += [schema(name, body) for name, body in sorted(schemas.items())]
    return "".join(parts)


def operation(method: str, path: str, op: dict[str, Any]) -> str:
    lines = [f"\n## `{method.upper()} {path}`\n"]
    if op.get("summary"):
        lines.append(f"\n**{op['summary']}.**\n")
    if op.get("description"):
        lines.append(f"\n{op['description'].strip()}\n")
    params = op.get("parameters", [])
    if params:
        lines.append("\n| parameter | in | type | required | meaning |\n|---|---|---|---|---|\n")
        lines += [
            f"| `{p['name']}` | {p['in']} | {type_of(p.get('schema', {}))} | "
            f"{'yes' if p.get('required') else 'no'} | {cell(p.get('description', ''))} |\n"
            for p in params
        ]
    body = op.get("requestBody")
    if body:
        for media, content in body.get("content", {}).items():
            lines.append(f"\nBody (`{media}`): {type_of(content.get('schema', {}))}.\n")
            for example in content.get("examples", {}).values():
                lines.append(f"\n{example.get('summary', 'Example')}:\n\n```json\n")
                lines.append(json.dumps(example["value"]) + "\n```\n")
    lines.append("\n| status | meaning | body |\n|---|---|---|\n")
    for status, answer in op.get("responses", {}).items():
        media = answer.get("content", {}).get("application/json", {})
        shape = type_of(media["schema"]) if "schema" in media else ""
        lines.append(f"| {status} | {cell(answer.get('description', ''))} | {shape} |\n")
    return "".join(lines)


def schema(name: str, body: dict[str, Any]) -> str:
    lines = [f"\n### {name}\n"]
    if body.get("description"):
        lines.append(f"\n{body['description'].strip()}\n")
    properties = body.get("properties", {})
    if properties:
        required = set(body.get("required", []))
        lines.append("\n| field | type | required | meaning |\n|---|---|---|---|\n")
        lines += [
            f"| `{field}` | {type_of(spec)} | {'yes' if field in required else 'no'} | "
            f"{cell(spec.get('description', ''))} |\n"
            for field, spec in properties.items()
        ]
    return "".join(lines)


def type_of(spec: dict[str, Any]) -> str:
    """A JSON schema as a short type: `string`, `integer or null`, `array of [TaskDoc](#taskdoc)`."""
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    for combined in ("anyOf", "oneOf"):
        if combined in spec:
            return " or ".join(dict.fromkeys(type_of(s) for s in spec[combined]))
    kind = spec.get("type")
    if kind == "array":
        return f"array of {type_of(spec.get('items', {}))}"
    if isinstance(kind, list):
        return " or ".join(kind)
    return str(kind) if kind else "any"


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


if __name__ == "__main__":
    main()
