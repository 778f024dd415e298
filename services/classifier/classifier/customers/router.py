"""HTTP endpoints for customers."""

from __future__ import annotations

from fastapi import APIRouter

from classifier.customers import service
from classifier.customers.schemas import CustomerOut
from classifier.db import SessionDep
from eventschemas.problems import Problem

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.get(
    "/{customer_id}",
    response_model_by_alias=True,
    responses={404: {"model": Problem, "description": "No such customer."}},
)
async def get_customer(customer_id: str, session: SessionDep) -> CustomerOut:
    """One customer's classes per dimension, with `since`, scheme version and why."""
    return await service.get_customer(session, customer_id)
