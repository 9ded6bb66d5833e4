"""Leases on singleton background tasks, so that several app replicas on one store run each task once.

    if hold_worker_lease(session=session, name="pregen", holder=me, seconds=30): ...   # take or renew
    release_worker_lease(session=session, name="pregen", holder=me)                    # hand over at once

Taking and renewing are one conditional UPDATE (or the first INSERT), atomic on SQLite and PostgreSQL alike: the
row goes to `holder` only if it already holds it or the previous holder let it expire.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from labeler.store.tables import WorkerLease, as_utc, table_of, utcnow


def holder_id() -> str:
    """A name for this process that is unique across machines and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def hold_worker_lease(*, session: Session, name: str, holder: str, seconds: float) -> bool:
    """Take or renew lease `name` for `holder` for `seconds`; True when `holder` holds it afterwards."""
    now = utcnow()
    table = table_of(WorkerLease)
    renewed = session.connection().execute(
        update(table)
        .where(table.c.name == name, or_(table.c.holder == holder, table.c.expires_at < now))
        .values(holder=holder, expires_at=now + timedelta(seconds=seconds), renewed_at=now)
    )
    if renewed.rowcount:
        session.commit()
        return True
    if session.get(WorkerLease, name) is not None:
        session.rollback()
        return False
    session.add(WorkerLease(name=name, holder=holder, expires_at=now + timedelta(seconds=seconds)))
    try:
        session.commit()
    except IntegrityError:  # another replica inserted it first
        session.rollback()
        return False
    return True


def release_worker_lease(*, session: Session, name: str, holder: str) -> None:
    """Let the lease expire now if `holder` has it, so another replica takes over without waiting."""
    table = table_of(WorkerLease)
    session.connection().execute(
        update(table).where(table.c.name == name, table.c.holder == holder).values(expires_at=utcnow())
    )
    session.commit()


def lease_holder(*, session: Session, name: str) -> str | None:
    """The holder of an unexpired lease `name`, or None."""
    row = session.exec(select(WorkerLease).where(WorkerLease.name == name)).first()
    if row is None:
        return None
    return row.holder if as_utc(row.expires_at) > utcnow() else None
