"""Standalone Kubernetes JSON schemas for kubeconform, from the kubernetes-validate package.

    python scripts/k8s_schemas.py OUT_DIR VERSION RENDERED.yaml [...]

kubernetes-validate ships the official OpenAPI-derived schemas per Kubernetes
version with `$ref`s into a shared `_definitions.json` (`$defs`); kubeconform reads only
self-contained files. For every built-in kind in the rendered manifests this
writes `OUT_DIR/v<VERSION>-standalone-strict/<kind>-<group>-<version>.json`
with the references inlined (once; an existing file is kept).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

SOURCE = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"


def inline(schema: Any, definitions: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    if isinstance(schema, list):
        return [inline(item, definitions, seen) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and "#/$defs/" in ref:
        name = ref.split("#/$defs/", 1)[1]
        if name in seen:  # recursive types (JSONSchemaProps) stay open
            return {}
        return inline(definitions[name], definitions, (*seen, name))
    return {key: inline(value, definitions, seen) for key, value in schema.items()}


def filename(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    group = group.split(".")[0]
    return f"{kind.lower()}-{group}-{version}.json" if group else f"{kind.lower()}-{version}.json"


def main(out: str, version: str, rendered: list[str]) -> None:
    source = SOURCE / f"v{version}-local-strict"
    target = Path(out) / f"v{version}-standalone-strict"
    target.mkdir(parents=True, exist_ok=True)
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    for path in rendered:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if not doc:
                continue
            name = filename(doc["apiVersion"], doc["kind"])
            if (target / name).exists() or not (source / name).exists():
                continue  # done already, or not a built-in kind (a CRD's)
            schema = inline(json.loads((source / name).read_text()), definitions)
            (target / name).write_text(json.dumps(schema))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
