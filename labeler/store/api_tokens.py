"""Personal API tokens: made and revoked by an admin, kept only as a SHA-256 digest, shown once. A token acts as
its user with the user's role at the time of each call (a disabled user's tokens stop working; a labeler made
admin gets admin calls), until it is revoked. Every call made with one is logged with its time and address.

    with Session(engine) as session:
        made = create_token(session=session, user="ana", name="survey tool", by="admin")  # made.secret: show once
        user = token_user(session=session, secret=made.secret)                         # None: unknown or revoked
        revoke_token(session=session, token_id=made.token_id)

Tokens are 32 random bytes, so a plain SHA-256 is enough to keep them: unlike passwords they cannot be guessed
from a list, and a fast digest keeps each API call cheap.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from labeler.store.tables import ROLES, ApiToken, ApiTokenUse, User, id_of, utcnow
from labeler.store.users import UserError, get_user

TOKEN_PREFIX = "rlk_"
MAX_TOKEN_CHARS = 128  # longer bearer values are refused before any digest


@dataclass(frozen=True)
class MadeToken:
    token_id: int
    secret: str  # the whole token, shown once
    prefix: str


@dataclass(frozen=True)
class TokenRow:
    """A token as lists show it (never its secret)."""

    id: int
    user: str
    role: str
    name: str
    prefix: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    uses: int


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(*, session: Session, user: str, name: str = "", by: str = "") -> MadeToken:
    """A new token for an existing, enabled person's account; UserError otherwise. Committed."""
    owner = get_user(session=session, name=user)
    if owner is None:
        raise UserError(f"no user named {user!r}")
    if owner.role not in ROLES:
        raise UserError(f"{user!r} is a {owner.role}: API tokens are for people's accounts")
    if owner.disabled:
        raise UserError(f"user {user!r} is disabled: enable the account before giving it a token")
    if len(name) > 64:
        raise UserError(f"a token's name has at most 64 characters; got {len(name)}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=id_of(owner), name=name.strip(), prefix=secret[:10], digest=digest(secret), created_by=by
    )
    session.add(row)
    session.commit()
    return MadeToken(token_id=id_of(row), secret=secret, prefix=row.prefix)


def token_user(*, session: Session, secret: str) -> tuple[ApiToken, User] | None:
    """The token and its user for a bearer value, or None when it is unknown, revoked, or its user is disabled."""
    if not secret or len(secret) > MAX_TOKEN_CHARS:
        return None
    found = session.exec(
        select(ApiToken, User)
        .join(User, col(User.id) == col(ApiToken.user_id))
        .where(col(ApiToken.digest) == digest(secret))
    ).first()
    if found is None:
        return None
    token, user = found
    if token.revoked_at is not None or user.disabled:
        return None
    return token, user


def record_use(*, session: Session, token_id: int, address: str, method: str, path: str, status: int) -> None:
    """Log one call made with the token and stamp its last use. Committed."""
    now = utcnow()
    session.add(
        ApiTokenUse(
            token_id=token_id, at=now, address=address[:64], method=method[:8], path=path[:255], status=status
        )
    )
    token = session.get(ApiToken, token_id)
    if token is not None:
        token.last_used_at = now
        session.add(token)
    session.commit()


def revoke_token(*, session: Session, token_id: int) -> ApiToken:
    """Revoke a token at once (its next call is refused). UserError when there is no such token. Committed."""
    token = session.get(ApiToken, token_id)
    if token is None:
        raise UserError(f"no API token {token_id}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.add(token)
        session.commit()
    return token


def list_tokens(*, session: Session, user: str | None = None) -> list[TokenRow]:
    """Every token (or one user's), newest first, with how often each was used."""
    query = select(ApiToken, User).join(User, col(User.id) == col(ApiToken.user_id))
    if user is not None:
        query = query.where(col(User.name) == user)
    rows = session.exec(query.order_by(col(ApiToken.id).desc())).all()
    uses = dict(
        session.exec(select(ApiTokenUse.token_id, func.count()).group_by(col(ApiTokenUse.token_id))).all()
    )
    return [
        TokenRow(
            id=id_of(t),
            user=u.name,
            role=u.role,
            name=t.name,
            prefix=t.prefix,
            created_by=t.created_by,
            created_at=t.created_at,
            revoked_at=t.revoked_at,
            last_used_at=t.last_used_at,
            uses=int(uses.get(id_of(t), 0)),
        )
        for t, u in rows
    ]


def recent_uses(*, session: Session, token_id: int, limit: int = 20) -> list[ApiTokenUse]:
    """A token's latest calls, newest first."""
    return list(
        session.exec(
            select(ApiTokenUse)
            .where(col(ApiTokenUse.token_id) == token_id)
            .order_by(col(ApiTokenUse.id).desc())
            .limit(limit)
        ).all()
    )
