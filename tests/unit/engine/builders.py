"""Plain factory functions for engine tests: facts at instants relative to NOW."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from classifier.engine import CustomerFacts, evaluate, parse_scheme, to_micros
from classifier.engine import default_scheme_text as _default
from classifier.engine.evaluate import Evaluation
from eventschemas.events import (
    CallLogged,
    CrmContactUpdated,
    CrmDealStageChanged,
    CrmRelationshipChanged,
    CrmTouchpointLogged,
    OrderCancelled,
    OrderPlaced,
    OrderRefunded,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
NOW_US = to_micros(NOW)
DEFAULT = parse_scheme(_default())


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


class Customer:
    """Builds a CustomerFacts by applying real event models."""

    def __init__(self, customer_id: str = "c") -> None:
        self.facts = CustomerFacts(customer_id)
        self.id = customer_id
        self._n = 0

    def _next(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n}"

    def order(
        self, amount: float, days_ago: float, *, order_id: str | None = None, status: str = "paid"
    ) -> Customer:
        self.facts.apply(
            OrderPlaced(
                customer_id=self.id,
                order_id=order_id or self._next("o"),
                amount=Decimal(str(amount)),
                currency="USD",
                amount_base=Decimal(str(amount)),
                base_currency="USD",
                placed_at=ago(days_ago),
                status=status,  # type: ignore[arg-type]
            )
        )
        return self

    def refund(self, order_id: str, amount: float, days_ago: float) -> Customer:
        self.facts.apply(
            OrderRefunded(
                customer_id=self.id,
                refund_id=self._next("r"),
                order_id=order_id,
                amount=Decimal(str(amount)),
                currency="USD",
                amount_base=Decimal(str(amount)),
                base_currency="USD",
                refunded_at=ago(days_ago),
            )
        )
        return self

    def cancel(self, order_id: str, days_ago: float) -> Customer:
        self.facts.apply(
            OrderCancelled(customer_id=self.id, order_id=order_id, cancelled_at=ago(days_ago))
        )
        return self

    def call(self, outcome: str, days_ago: float, intent: str | None = None) -> Customer:
        self.facts.apply(
            CallLogged(
                customer_id=self.id,
                call_id=self._next("call"),
                started_at=ago(days_ago),
                outcome=outcome,
                intent=intent,  # type: ignore[arg-type]
            )
        )
        return self

    def crm(
        self, days_ago: float = 1, tags: list[str] | None = None, **attributes: Any
    ) -> Customer:
        self.facts.apply(
            CrmContactUpdated(
                customer_id=self.id,
                crm_record_id="crm-1",
                updated_at=ago(days_ago),
                attributes=attributes,
                tags=tags,
            )
        )
        return self

    def deal(self, stage: str, days_ago: float) -> Customer:
        self.facts.apply(
            CrmDealStageChanged(
                customer_id=self.id, deal_id="d-1", stage=stage, changed_at=ago(days_ago)
            )
        )
        return self

    def wecom(self, change: str, days_ago: float, *, salesperson: str = "sales-1") -> Customer:
        self.facts.apply(
            CrmRelationshipChanged(
                customer_id=self.id,
                channel="wecom",
                owner_id=salesperson,
                change=change,  # type: ignore[arg-type]
                changed_at=ago(days_ago),
            )
        )
        return self

    def follow_up(self, days_ago: float, kind: str = "visit") -> Customer:
        self.facts.apply(
            CrmTouchpointLogged(
                customer_id=self.id,
                touchpoint_id=self._next("t"),
                channel="fxiaoke",
                kind=kind,
                touched_at=ago(days_ago),
            )
        )
        return self

    def evaluate(self, at: datetime = NOW, **kwargs: Any) -> Evaluation:
        return evaluate(DEFAULT, self.facts, to_micros(at), **kwargs)

    def classes(self, at: datetime = NOW, **kwargs: Any) -> dict[str, str]:
        return {d: r.cls for d, r in self.evaluate(at, **kwargs).classes.items()}
