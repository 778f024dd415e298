"""Streamed CSV import: rows validated and published in chunks, a report per bad row.

The upload is read line by line from the spooled file (never whole into
memory). Event ids are deterministic, so uploading the same file again is
safe: rows already accepted produce the same ids and the classifier drops them.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ValidationError

from eventschemas.envelope import Envelope
from eventschemas.problems import ServiceError, field_errors
from ingest.errors import InvalidInput, KafkaUnavailable
from ingest.metrics import REJECTS
from ingest.publisher import EventPublisher

CHUNK_ROWS = 500
MAX_REPORTED_ERRORS = 1000
Item = TypeVar("Item", bound=BaseModel)


class RowError(BaseModel):
    line: int
    field: str
    message: str


class ImportReport(BaseModel):
    """What happened to every data row of the file."""

    rows: int
    accepted: int
    rejected: int
    errors: list[RowError]
    errors_truncated: bool = False


def _rows(binary: IO[bytes]) -> Iterator[tuple[int, dict[str, str]]]:
    text = codecs.getreader("utf-8-sig")(binary)  # tolerate a BOM from spreadsheet exports
    reader = csv.DictReader(text)
    if not reader.fieldnames:
        raise InvalidInput("file", "the CSV file is empty or has no header row")
    for row in reader:
        if None in row:  # more cells than header columns
            yield reader.line_num, {"__extra__": "x"}
            continue
        yield reader.line_num, row


def _clean(row: dict[str, str]) -> dict[str, Any]:
    """Empty cells are absent values, so optional columns may be left blank."""
    return {k.strip(): v.strip() for k, v in row.items() if k and v is not None and v.strip()}


@dataclass
class _Chunk:
    envelopes: list[Envelope] = field(default_factory=list)
    rows: int = 0
    errors: list[RowError] = field(default_factory=list)
    rejected: int = 0
    done: bool = False


def _read_chunk(
    rows: Iterator[tuple[int, dict[str, str]]],
    model: type[Item],
    build: Callable[[Item], Envelope],
) -> _Chunk:
    """Parse and validate up to CHUNK_ROWS rows (blocking work: run in a thread)."""
    chunk = _Chunk()
    for line, row in rows:
        chunk.rows += 1
        if "__extra__" in row:
            chunk.rejected += 1
            chunk.errors.append(
                RowError(line=line, field="row", message="more cells than header columns")
            )
        else:
            try:
                chunk.envelopes.append(build(model.model_validate(_clean(row))))
            except ValidationError as exc:
                chunk.rejected += 1
                chunk.errors.extend(
                    RowError(line=line, field=e.field, message=e.message)
                    for e in field_errors(exc.errors())
                )
            except ServiceError as exc:
                chunk.rejected += 1
                chunk.errors.extend(
                    RowError(line=line, field=e.field, message=e.message) for e in exc.errors or []
                )
        if chunk.rows >= CHUNK_ROWS:
            return chunk
    chunk.done = True
    return chunk


async def import_csv(
    binary: IO[bytes],
    model: type[Item],
    build: Callable[[Item], Envelope],
    publisher: EventPublisher,
) -> ImportReport:
    """Validate and publish every row; a bad row is reported with its line number.

    Reading and validating happen in a worker thread, a chunk at a time, so a
    large upload never blocks the event loop; each chunk is published (and
    acknowledged) before the next is read.
    """
    report = ImportReport(rows=0, accepted=0, rejected=0, errors=[])
    rows = _rows(binary)
    try:
        while True:
            chunk = await asyncio.to_thread(_read_chunk, rows, model, build)
            report.rows += chunk.rows
            report.rejected += chunk.rejected
            room = MAX_REPORTED_ERRORS - len(report.errors)
            report.errors.extend(chunk.errors[: max(room, 0)])
            report.errors_truncated = report.errors_truncated or len(chunk.errors) > room
            await publisher.publish(chunk.envelopes)
            report.accepted += len(chunk.envelopes)
            if chunk.done:
                break
    except UnicodeDecodeError as exc:
        raise InvalidInput("file", f"not UTF-8 text: {exc.reason}") from exc
    except csv.Error as exc:
        raise InvalidInput("file", f"malformed CSV: {exc}") from exc
    except KafkaUnavailable as exc:
        exc.detail = (
            f"{exc.detail}; {report.accepted} rows were accepted before the broker "
            "failed: upload the same file again (accepted rows are not duplicated)"
        )
        raise
    if report.rejected:
        REJECTS.labels(reason="invalid-row").inc(report.rejected)
    return report
