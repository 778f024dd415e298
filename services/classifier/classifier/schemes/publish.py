"""`python -m classifier.schemes.publish`: write the scheme format's JSON Schema.

schemas/json/scheme.schema.json is generated from the scheme models and
checked in next to the event contracts; tests/unit/test_contracts.py fails
when it drifts.
"""

from __future__ import annotations

import json

from classifier.engine.scheme import scheme_json_schema
from eventschemas.generate import write

SCHEME_SCHEMA_PATH = "json/scheme.schema.json"


def rendered() -> dict[str, str]:
    return {
        SCHEME_SCHEMA_PATH: json.dumps(scheme_json_schema(), indent=2, ensure_ascii=False) + "\n"
    }


def main() -> None:
    write(rendered())


if __name__ == "__main__":
    main()
