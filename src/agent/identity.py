"""The user's identity as the agents see it: a paragraph of their instructions, and dates in
the user's own time zone."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

from agent.roles import WHAT_ROLES_MAY_DO
from store.context import Identity


def user_zone(identity: Identity) -> tzinfo:
    """The user's time zone (checked when the token was read), else UTC."""
    return ZoneInfo(identity.time_zone) if identity.time_zone else UTC


def local_time(moment: datetime, identity: Identity) -> str:
    """`moment` in the user's time zone, e.g. "Tue 2 Dec 2026, 14:05 CET"."""
    local = moment.astimezone(user_zone(identity))
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M %Z}"


def about_the_user(identity: Identity, now: datetime | None = None) -> str:
    """What the agent knows of the user, from their verified sign-in: part of its instructions."""
    now = now or datetime.now(UTC)
    zone = identity.time_zone or "UTC"
    lines = [
        "About the user (from their verified sign-in, not from the conversation):",
        f"- Their local time now: {local_time(now, identity)} ({zone}). Give dates and "
        "times in this time zone.",
        f"- Role: {identity.role}: they {WHAT_ROLES_MAY_DO.get(identity.role, '')}. If they "
        "ask for something their role does not allow, tell them so.",
    ]
    if identity.name:
        lines.append(f"- Name: {identity.name}")
    if identity.locale:
        lines.append(
            f"- Locale: {identity.locale}. Answer in its language unless they write in another."
        )
    if identity.tenant:
        lines.append(f"- Organisation: {identity.tenant}")
    return "\n".join(lines)
