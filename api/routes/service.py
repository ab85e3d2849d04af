"""Health, readiness, metrics and the service's public identity."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from sqlalchemy import text

from api.routes.common import StateDep

router = APIRouter(tags=["service"])


@router.get("/healthz")
def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
def ready(state: StateDep) -> dict[str, Any]:
    """Readiness: the store answers."""
    with state.ledger.reader.connect() as conn:
        conn.execute(text("SELECT 1"))
    return {"status": "ready", "log_size": state.ledger.size()}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(state: StateDep) -> str:
    """Prometheus metrics: appends, append latency, batch sizes, log size."""
    return state.metrics.render(state.ledger.size())


@router.get("/v1/service")
def service(state: StateDep) -> dict[str, Any]:
    """The log's origin and verifier key, and the operator: what a verifier must trust."""
    s = state.service
    return {
        "origin": s.origin,
        "log_key": s.log_key.public.vkey,
        "operator": s.operator_id,
        "operator_key": s.operator_vkey,
        "log_size": state.ledger.size(),
    }
