"""From a verified token's claims to the user's `Identity`: name, locale, time zone, tenant
and roles, through the configured claim mapping (settings.ClaimMapping). Claims only: nothing
a request sends can set them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.roles import acting_role
from settings import ClaimMapping
from store.context import Identity

MAX_CLAIM_CHARS = 100  # a name or tenant longer than this is cut: it goes into the prompt
MAX_ROLES = 20
LOCALE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8}){0,3}")
# Control characters (newlines included): a claim is one line of the agent's instructions.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def identity_from(claims: Mapping[str, Any], mapping: ClaimMapping) -> Identity:
    """The user's identity from the claims the mapping names (the first present of each)."""
    roles = _roles(_claim(claims, mapping.roles))
    return Identity(
        name=_text(_claim(claims, mapping.name)),
        locale=_locale(_claim(claims, mapping.locale)),
        time_zone=_time_zone(_claim(claims, mapping.time_zone)),
        tenant=_text(_claim(claims, mapping.tenant)),
        roles=roles,
        role=acting_role(roles, mapping.default_role),
    )


def _claim(claims: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    """The first of `names` the claims carry: a claim named exactly so, else a dotted path
    into nested claims (`realm_access.roles`)."""
    for name in names:
        if name in claims:
            return claims[name]
        value: Any = claims
        for part in name.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is not None:
            return value
    return None


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = " ".join(CONTROL.sub(" ", value).split())[:MAX_CLAIM_CHARS]
    return text or None


def _locale(value: Any) -> str | None:
    return value if isinstance(value, str) and LOCALE.fullmatch(value) else None


def _time_zone(value: Any) -> str | None:
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    return value if _known_zone(value) else None


@lru_cache(maxsize=256)
def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _roles(value: Any) -> tuple[str, ...]:
    """Roles as a list (Cognito groups) or one string of names separated by spaces or commas."""
    if isinstance(value, str):
        names: list[Any] = re.split(r"[\s,]+", value)
    elif isinstance(value, list | tuple):
        names = list(value)
    else:
        return ()
    roles = [text for name in names if (text := _text(name))]
    return tuple(roles[:MAX_ROLES])
