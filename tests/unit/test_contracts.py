"""Event contracts: generated files match the models; ids are deterministic; round-trips."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from classifier.schemes import publish
from eventschemas.envelope import Envelope
from eventschemas.events import OrderPlaced, UnknownEventType, parse_event
from eventschemas.generate import SCHEMAS_DIR, rendered

GENERATED = rendered() | publish.rendered()


@pytest.mark.parametrize("rel", sorted(GENERATED))
def test_checked_in_schema_matches_the_models(rel: str) -> None:
    path = SCHEMAS_DIR / rel
    tool = "classifier.schemes.publish" if rel in publish.rendered() else "eventschemas.generate"
    assert path.is_file(), f"schemas/{rel} missing: run python -m {tool}"
    assert path.read_text(encoding="utf-8") == GENERATED[rel], (
        f"schemas/{rel} drifted from the models: run python -m {tool}"
    )


def test_the_contracts_package_imports_no_service() -> None:
    """schemas/eventschemas is below the services: no import points up into them."""
    root = SCHEMAS_DIR / "eventschemas"
    for module in root.glob("*.py"):
        text = module.read_text(encoding="utf-8")
        assert "import classifier" not in text, module.name
        assert "from classifier" not in text, module.name
        assert "from ingest" not in text, module.name


def _order(**changes: object) -> OrderPlaced:
    base = {
        "customer_id": "c",
        "order_id": "o-1",
        "amount": Decimal("5"),
        "currency": "EUR",
        "amount_base": Decimal("5.4"),
        "base_currency": "USD",
        "placed_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return OrderPlaced.model_validate({**base, **changes})


def test_event_ids_are_deterministic_per_source_fact_and_revision() -> None:
    assert _order().to_envelope("shop").id == _order(amount=Decimal("9")).to_envelope("shop").id
    assert _order().to_envelope("shop").id != _order(revision=1).to_envelope("shop").id
    assert _order().to_envelope("shop").id != _order().to_envelope("erp").id
    assert _order().to_envelope("shop").id != _order(order_id="o-2").to_envelope("shop").id


def test_envelope_round_trips_through_bytes() -> None:
    envelope = _order().to_envelope("shop")

    again = Envelope.from_bytes(envelope.to_bytes())

    assert again == envelope
    assert parse_event(again) == _order()


def test_unknown_type_and_mismatched_subject_are_rejected() -> None:
    envelope = _order().to_envelope("shop")
    with pytest.raises(UnknownEventType):
        parse_event(envelope.model_copy(update={"type": "order.lost"}))
    with pytest.raises(ValueError, match="subject"):
        parse_event(envelope.model_copy(update={"subject": "someone-else"}))
