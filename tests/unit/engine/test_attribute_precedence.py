"""CRM attributes from several sources: the most trusted source, then the most recent;
the explanation names the source; disagreements are listed."""

from __future__ import annotations

from classifier.engine import CustomerFacts, evaluate, parse_scheme
from classifier.engine.facts import fact_of
from eventschemas.events import CrmContactUpdated
from tests.unit.engine.builders import DEFAULT, NOW_US, Customer, ago


def crm(c: Customer, source: str, days_ago: float, **attributes: object) -> None:
    event = CrmContactUpdated(
        customer_id=c.id, crm_record_id=f"{source}-1", updated_at=ago(days_ago),
        attributes=attributes,
    )  # fmt: skip
    c.facts.apply_fact(fact_of(event, source))


def test_the_trusted_source_wins_over_a_more_recent_one_and_is_named() -> None:
    c = Customer()
    crm(c, "crm/fxiaoke", 10, industry="manufacturing")
    crm(c, "crm/hubspot", 1, industry="retail")  # newer, but HubSpot is trusted less

    result = c.evaluate().classes["industry"]

    assert result.cls == "manufacturing"
    assert result.checks[0]["source"] == "crm/fxiaoke"
    assert "(from crm/fxiaoke)" in result.explanation["summary"]
    assert c.facts.attribute_conflicts() == {
        "industry": {"crm/fxiaoke": "manufacturing", "crm/hubspot": "retail"}
    }


def test_among_sources_of_equal_standing_the_most_recent_wins() -> None:
    scheme = parse_scheme(
        DEFAULT.spec.model_copy(update={"attribute_sources": {"*": []}}).model_dump(by_alias=True)
    )
    c = Customer()
    crm(c, "crm/fxiaoke", 10, industry="manufacturing")
    crm(c, "crm/hubspot", 1, industry="retail")

    assert c.evaluate().classes["industry"].cls == "manufacturing"
    assert evaluate(scheme, c.facts, NOW_US).classes["industry"].cls == "retail"


def test_one_source_updating_itself_is_no_conflict_and_sources_survive_storage() -> None:
    c = Customer()
    crm(c, "crm/hubspot", 10, industry="retail", employee_count=40)
    crm(c, "crm/hubspot", 1, industry="services")
    crm(c, "crm/zoho", 2, employee_count=300)

    stored = CustomerFacts.from_doc(c.id, c.facts.to_doc())

    assert stored.attribute("industry", ["crm/hubspot"]) == ("services", "crm/hubspot")
    assert stored.attribute("employee_count", ["crm/zoho"]) == (300, "crm/zoho")
    assert set(stored.attribute_conflicts()) == {"employee_count"}
    assert c.facts.to_doc()["conflicts"] == {"employee_count": {"crm/hubspot": 40, "crm/zoho": 300}}
    assert Customer().crm(industry="retail").classes()["industry"] == "retail"  # no source


def test_a_rule_on_an_attribute_names_its_source() -> None:
    c = Customer()
    crm(c, "crm/salesforce", 3, key_account=True)

    result = c.evaluate().classes["relationship"]

    assert result.cls == "strategic"
    assert result.checks[0]["source"] == "crm/salesforce"
