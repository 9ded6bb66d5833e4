"""Users and roles. Passwords are hashed with scrypt (a slow, memory-hard KDF) and a random salt.

rankloop user add alice --role labeler      # prints a generated password unless --password is given
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from sqlmodel import Session, select

from labeler.store.tables import JUDGE_ROLE, ROLES, User, utcnow

_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class UserError(ValueError):
    """A user request that cannot be done (unknown name, duplicate, bad role)."""


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt_b64), **_SCRYPT)
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


def new_password() -> str:
    return secrets.token_urlsafe(12)


def get_user(*, session: Session, name: str) -> User | None:
    return session.exec(select(User).where(User.name == name)).first()


def new_account(*, session: Session, name: str, password_hash: str, role: str) -> User:
    """An account added to the session's transaction (not committed): UserError when the name is taken. Hash the
    password before calling: the slow part stays outside the transaction."""
    if get_user(session=session, name=name) is not None:
        raise UserError(f"user {name!r} already exists")
    user = User(name=name, password_hash=password_hash, role=role)
    session.add(user)
    return user


def add_user(*, session: Session, name: str, password: str, role: str = "labeler") -> User:
    name = name.strip()
    if not name:
        raise UserError("user name is empty")
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise UserError("password must be at least 8 characters")
    user = new_account(session=session, name=name, password_hash=hash_password(password), role=role)
    session.commit()
    session.refresh(user)
    return user


_DUMMY_HASH: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(hash_password(secrets.token_urlsafe(16)))
    return _DUMMY_HASH[0]


def authenticate(*, session: Session, name: str, password: str) -> User | None:
    """The enabled person with this name and password, else None (a judge's account never logs in).

    Costs one scrypt whatever the outcome: an unknown or disabled name is checked against a dummy hash, so the
    answer's timing does not tell which names exist."""
    user = get_user(session=session, name=name)
    usable = user is not None and not user.disabled and user.role != JUDGE_ROLE
    matches = check_password(password, user.password_hash if usable and user else _dummy_hash())
    return user if usable and matches else None


def _require(session: Session, name: str) -> User:
    user = get_user(session=session, name=name)
    if user is None:
        raise UserError(f"no user named {name!r}")
    return user


def set_disabled(*, session: Session, name: str, disabled: bool) -> User:
    user = _require(session, name)
    user.disabled = disabled
    if disabled:
        user.sessions_valid_after = utcnow()  # open sessions end at once, on every replica
    session.add(user)
    session.commit()
    return user


def reset_password(*, session: Session, name: str, password: str | None = None) -> str:
    """Set a new password (generated when not given) and return it."""
    password = password or new_password()
    if len(password) < 8:
        raise UserError("password must be at least 8 characters")
    password_hash = hash_password(password)
    user = _require(session, name)
    user.password_hash = password_hash
    user.sessions_valid_after = utcnow()  # whoever held the old password is logged out
    session.add(user)
    session.commit()
    return password


def end_sessions(*, session: Session, name: str) -> None:
    """End every session of `name` issued until now, on every replica (a log-out)."""
    user = _require(session, name)
    user.sessions_valid_after = utcnow()
    session.add(user)
    session.commit()


def user_names(*, session: Session) -> dict[int, str]:
    """Every account's id and name (reports show names, rankings hold ids)."""
    return {i: n for i, n in session.exec(select(User.id, User.name)).all() if i is not None}


def has_users(*, session: Session) -> bool:
    return session.exec(select(User.id)).first() is not None


def ensure_admin(*, session: Session) -> str | None:
    """On a store with no users, create `admin` with a random password and return it (print it once)."""
    if has_users(session=session):
        return None
    password = new_password()
    add_user(session=session, name="admin", password=password, role="admin")
    return password
