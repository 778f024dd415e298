"""Turn published CustomResourceDefinitions into the JSON schemas kubeconform reads.

    python deploy/helm/crd-schemas/convert.py CRD.yaml [CRD.yaml ...]

writes `<group>/<kind>_<version>.json` next to this file for every served
version, the layout scripts/k8s-check.sh gives kubeconform
(`<dir>/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json`).
Strict like kubeconform's own openapi2jsonschema: an object that lists its
properties refuses unknown ones unless the CRD says
`x-kubernetes-preserve-unknown-fields`; `x-kubernetes-int-or-string` becomes
integer-or-string. Where each CRD comes from: README.md beside this file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def strict(schema: Any) -> Any:
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items() if key != "description"}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and not preserve and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return {key: value for key, value in out.items() if not key.startswith("x-kubernetes-")}


def convert(crd: dict[str, Any]) -> list[Path]:
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    written = []
    for version in crd["spec"]["versions"]:
        if not version.get("served", True):
            continue
        schema = strict(version["schema"]["openAPIV3Schema"])
        # metadata is validated by the API server, not by the CRD.
        schema["properties"]["metadata"] = {"type": "object"}
        target = HERE / group / f"{kind.lower()}_{version['name']}.json"
        target.parent.mkdir(exist_ok=True)
        target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        written.append(target)
    return written


def main(paths: list[str]) -> None:
    for path in paths:
        for document in yaml.safe_load_all(Path(path).read_text()):
            if document and document.get("kind") == "CustomResourceDefinition":
                for target in convert(document):
                    print(target.relative_to(HERE))  # noqa: T201


if __name__ == "__main__":
    main(sys.argv[1:])
