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

from pydantic import BaseModel, Field, ValidationError

from eventschemas.envelope import Envelope
from eventschemas.problems import ServiceError, field_errors
from ingest.errors import InvalidInput, KafkaUnavailable
from ingest.fingerprints import conflict_errors
from ingest.gate import IntakeGate
from ingest.metrics import REJECTS
from ingest.publisher import EventPublisher
from ingest.quotas import QuotaExceeded

CHUNK_ROWS = 500
# An import over its key's quota waits this long at most per chunk, then gets a 429.
IMPORT_PACE_SECONDS = 5.0
MAX_REPORTED_ERRORS = 1000
# Accepted rows listed with their event and customer ids: ~70 bytes of answer
# each, so a 200 MB upload cannot make a 200 MB answer; split larger files.
MAX_LISTED_EVENTS = 100_000
Item = TypeVar("Item", bound=BaseModel)


class RowError(BaseModel):
    line: int
    field: str
    message: str


class ImportReport(BaseModel):
    """What happened to every data row of the file.

    Accepted rows in file order: `lines[i]` became event `event_ids[i]`, keyed by
    customer `customer_ids[i]` (derived ids `id-e-…`/`id-p-…` included); the
    first 100,000 accepted rows are listed (`events_truncated` beyond). Rows of erased
    customers or identifiers are not published: `suppressed` lists their event ids
    and `suppressed_lines` their lines (counted in neither `accepted` nor `rejected`).
    """

    rows: int
    accepted: int
    rejected: int
    errors: list[RowError]
    errors_truncated: bool = False
    event_ids: list[str] = Field(default_factory=list)
    customer_ids: list[str] = Field(default_factory=list)
    lines: list[int] = Field(default_factory=list)
    events_truncated: bool = False
    suppressed: list[str] = Field(default_factory=list)
    suppressed_lines: list[int] = Field(default_factory=list)


class LineTooLong(InvalidInput):
    def __init__(self, line: int, limit: int) -> None:
        super().__init__(
            "file", f"line {line} is longer than {limit} bytes (INGEST_MAX_CSV_LINE_BYTES)"
        )


def _lines(binary: IO[bytes], limit: int) -> Iterator[str]:
    """Physical lines as text, each at most `limit` bytes: one huge line is refused
    after reading `limit` bytes of it, not parsed for minutes."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()  # tolerate a BOM from spreadsheets
    number = 0
    while True:
        raw = binary.readline(limit + 1)
        if not raw:
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
            return
        number += 1
        if len(raw) > limit:
            raise LineTooLong(number, limit)
        yield decoder.decode(raw)


def _rows(binary: IO[bytes], line_limit: int) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(_lines(binary, line_limit))
    if not reader.fieldnames:
        raise InvalidInput("file", "the CSV file is empty or has no header row")
    for row in reader:
        if None in row:  # more cells than header columns
            yield reader.line_num, {"__extra__": "x"}
            continue
        yield reader.line_num, row


# Columns whose model field takes a strict integer (JSON clients must send a
# number); in a CSV every cell is text, so digits are turned into that number.
_INTEGER_COLUMNS = frozenset({"revision"})


def _clean(row: dict[str, str]) -> dict[str, Any]:
    """Empty cells are absent values, so optional columns may be left blank."""
    cells: dict[str, Any] = {
        k.strip(): v.strip() for k, v in row.items() if k and v is not None and v.strip()
    }
    for column in _INTEGER_COLUMNS & cells.keys():
        if cells[column].isascii() and cells[column].isdigit():
            cells[column] = int(cells[column])
    return cells


@dataclass
class _Chunk:
    envelopes: list[Envelope] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # the line of each envelope
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
                chunk.lines.append(line)
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


async def _admit(gate: IntakeGate, chunk: _Chunk, report: ImportReport) -> list[int]:
    """Charge the chunk to the key's quota; report rows that re-send an id and revision
    with another payload (a 409 for a single event) and leave them out. Gives the
    positions (in the chunk) of the envelopes to publish."""
    conflicts = await gate.admit(chunk.envelopes, pace_up_to=IMPORT_PACE_SECONDS)
    if not conflicts:
        return list(range(len(chunk.envelopes)))
    report.rejected += len(conflicts)
    REJECTS.labels(reason="conflicting-resend").inc(len(conflicts))
    for position, fields in sorted(conflicts.items()):
        if len(report.errors) >= MAX_REPORTED_ERRORS:
            report.errors_truncated = True
            break
        report.errors.extend(
            RowError(line=chunk.lines[position], field=e.field, message=e.message)
            for e in conflict_errors(fields)
        )
    return [position for position in range(len(chunk.envelopes)) if position not in conflicts]


def _list_accepted(report: ImportReport, envelopes: list[Envelope], lines: list[int]) -> None:
    room = max(MAX_LISTED_EVENTS - len(report.event_ids), 0)
    report.events_truncated = report.events_truncated or len(envelopes) > room
    report.event_ids.extend(e.id for e in envelopes[:room])
    report.customer_ids.extend(e.subject for e in envelopes[:room])
    report.lines.extend(lines[:room])


async def import_csv(
    binary: IO[bytes],
    model: type[Item],
    build: Callable[[Item], Envelope],
    publisher: EventPublisher,
    gate: IntakeGate,
    *,
    line_limit: int = 64 * 1024,
) -> ImportReport:
    """Validate and publish every row; a bad row is reported with its line number.

    Reading and validating happen in a worker thread, a chunk at a time, so a
    large upload never blocks the event loop; each chunk is published (and
    acknowledged) before the next is read.
    """
    report = ImportReport(rows=0, accepted=0, rejected=0, errors=[])
    csv.field_size_limit(line_limit)  # a quoted field may span lines: bound it too
    rows = _rows(binary, line_limit)
    try:
        while True:
            chunk = await asyncio.to_thread(_read_chunk, rows, model, build)
            report.rows += chunk.rows
            report.rejected += chunk.rejected
            room = MAX_REPORTED_ERRORS - len(report.errors)
            report.errors.extend(chunk.errors[: max(room, 0)])
            report.errors_truncated = report.errors_truncated or len(chunk.errors) > room
            kept = await _admit(gate, chunk, report)
            envelopes = [chunk.envelopes[position] for position in kept]
            envelopes, suppressed = await gate.leave_out_suppressed(envelopes)
            if suppressed:
                left_out = set(suppressed)
                report.suppressed.extend(suppressed)
                report.suppressed_lines.extend(
                    chunk.lines[p] for p in kept if chunk.envelopes[p].id in left_out
                )
                kept = [p for p in kept if chunk.envelopes[p].id not in left_out]
            await gate.publish(publisher, envelopes)
            report.accepted += len(envelopes)
            _list_accepted(report, envelopes, [chunk.lines[position] for position in kept])
            if chunk.done:
                break
    except UnicodeDecodeError as exc:
        raise InvalidInput("file", f"not UTF-8 text: {exc.reason}") from exc
    except csv.Error as exc:
        raise InvalidInput("file", f"malformed CSV: {exc}") from exc
    except LineTooLong as exc:
        if report.accepted:
            exc.detail = (
                f"{exc.detail}; the {report.accepted} rows before it were accepted: fix the "
                "file and upload it again (accepted rows are not duplicated)"
            )
        raise
    except QuotaExceeded as exc:
        exc.detail = (
            f"{exc.detail} beyond the {report.accepted} rows accepted: upload the same file "
            "again later (accepted rows are not duplicated), or use a key with a larger quota"
        )
        raise
    except KafkaUnavailable as exc:
        exc.detail = (
            f"{exc.detail}; {report.accepted} rows were accepted before the broker "
            "failed: upload the same file again (accepted rows are not duplicated)"
        )
        raise
    if report.rejected:
        REJECTS.labels(reason="invalid-row").inc(report.rejected)
    return report
