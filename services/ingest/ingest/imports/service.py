"""Streamed CSV import: rows validated and published in chunks, a report per bad row.

The upload is read line by line from the spooled file (never whole into
memory). Event ids are deterministic, so uploading the same file again is
safe: rows already accepted produce the same ids and the classifier drops them.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ValidationError

from eventschemas.envelope import Envelope
from eventschemas.problems import ServiceError, field_errors
from ingest.errors import InvalidInput, KafkaUnavailable
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


async def import_csv(
    binary: IO[bytes],
    model: type[Item],
    build: Callable[[Item], Envelope],
    publisher: EventPublisher,
) -> ImportReport:
    """Validate and publish every row; a bad row is reported with its line number."""
    report = ImportReport(rows=0, accepted=0, rejected=0, errors=[])
    chunk: list[Envelope] = []

    def reject(line: int, field: str, message: str) -> None:
        if len(report.errors) < MAX_REPORTED_ERRORS:
            report.errors.append(RowError(line=line, field=field, message=message))
        else:
            report.errors_truncated = True

    try:
        for line, row in _rows(binary):
            report.rows += 1
            if "__extra__" in row:
                report.rejected += 1
                reject(line, "row", "more cells than header columns")
                continue
            try:
                chunk.append(build(model.model_validate(_clean(row))))
            except ValidationError as exc:
                report.rejected += 1
                for err in field_errors(exc.errors()):
                    reject(line, err.field, err.message)
            except ServiceError as exc:
                report.rejected += 1
                for err in exc.errors or []:
                    reject(line, err.field, err.message)
            if len(chunk) >= CHUNK_ROWS:
                await publisher.publish(chunk)
                report.accepted += len(chunk)
                chunk = []
        await publisher.publish(chunk)
        report.accepted += len(chunk)
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
    return report
