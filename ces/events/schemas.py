"""JSON Schema of every event, exported to docs/schemas/ (kept current by a test)."""

from __future__ import annotations

import json
from pathlib import Path

from ces.events.registry import EVENT_TYPES


def schema_documents() -> dict[str, str]:
    """File name -> JSON text, for every registered event type at its current version."""
    documents = {}
    for event_type, cls in sorted(EVENT_TYPES.items()):
        version = cls.model_fields["schema_version"].default
        schema = cls.model_json_schema(mode="serialization")
        schema["$id"] = f"urn:ces:event:{event_type}:v{version}"
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        documents[f"{event_type}.v{version}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return documents


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in schema_documents().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
