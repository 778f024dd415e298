"""What the AsyncAPI document declares for a channel, resolved from the document itself.

The message schemas are taken from `schemas/asyncapi.yaml` and every `$ref`
is followed as a generic resolver would (relative files, then each file's own
`$id` and `$defs`), so a record is checked against what the document says, not
against a file a test picked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml
from jsonschema import Draft7Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from eventschemas.generate import SCHEMAS_DIR

DOCUMENT = SCHEMAS_DIR / "asyncapi.yaml"


def _registry(document: dict[str, Any]) -> Registry:
    resources = [(DOCUMENT.as_uri(), Resource.from_contents(document, DRAFT7))]
    for path in sorted((SCHEMAS_DIR / "json").rglob("*.json")):
        resource = Resource.from_contents(orjson.loads(path.read_bytes()), DRAFT7)
        resources.append((path.as_uri(), resource))
        if resource.id():
            resources.append((str(resource.id()), resource))
    return Registry().with_resources(resources)


class AsyncApiContract:
    def __init__(self, path: Path = DOCUMENT) -> None:
        self.document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        self._registry = _registry(self.document)

    def _resolve(self, pointer: str) -> Any:
        resolved = self._registry.resolver(DOCUMENT.as_uri()).lookup(pointer)
        return resolved.contents

    def channel_messages(self, address: str) -> dict[str, str]:
        """Message name -> JSON pointer (into the document) of each message of the channel."""
        [channel] = [c for c in self.document["channels"].values() if c["address"] == address]
        return {name: ref["$ref"] for name, ref in channel["messages"].items()}

    def _errors(self, pointer: str, instance: Any) -> list[str]:
        validator = Draft7Validator(
            {"$ref": f"{DOCUMENT.as_uri()}{pointer}"},
            registry=self._registry,
            format_checker=FormatChecker(),
        )
        return [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(instance)
        ]

    def matching_messages(self, address: str, record: Any) -> dict[str, list[str]]:
        """For each message the channel declares: what in `record` does not match it."""
        headers = {name: raw.decode() for name, raw in record.headers}
        out: dict[str, list[str]] = {}
        for name, pointer in self.channel_messages(address).items():
            message = self._resolve(pointer)
            content_type = message.get("contentType", self.document.get("defaultContentType"))
            payload: Any = (
                orjson.loads(record.value)
                if content_type.endswith("json")
                else record.value.decode("utf-8", "replace")
            )
            errors = self._errors(f"{pointer}/payload", payload)
            errors += [f"header {e}" for e in self._errors(f"{pointer}/headers", headers)]
            key_schema = message["bindings"]["kafka"]["key"]
            if key_schema.get("type") == "string" and not isinstance(record.key, bytes):
                errors.append("the key is not a string")
            out[name] = errors
        return out

    def message_of(self, address: str, record: Any) -> str:
        """The one message of the channel `record` is an instance of; fails if not exactly one."""
        results = self.matching_messages(address, record)
        matched = [name for name, errors in results.items() if not errors]
        assert len(matched) == 1, f"{address}@{record.offset}: matches {matched}; {results}"
        return matched[0]
