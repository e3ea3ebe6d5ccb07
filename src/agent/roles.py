"""What each role may do, enforced by the tools themselves (not only said in the prompt).

A token's roles come through the claim mapping (handlers.claims); the server acts on one:
the most permissive known role the token carries, else the configured default role.
"""

from __future__ import annotations

from collections.abc import Iterable

from store.context import Identity

VIEWER = "viewer"  # may see the task list, not change it
MEMBER = "member"  # may see and change the task list
ROLES = (MEMBER, VIEWER)  # most permissive first
DEFAULT_ROLE = MEMBER
WHAT_ROLES_MAY_DO = {
    VIEWER: "may see their task list but not add, complete, reopen or delete tasks",
    MEMBER: "may see and change their task list",
}


def acting_role(token_roles: Iterable[str], default: str = DEFAULT_ROLE) -> str:
    """The most permissive known role among `token_roles` (case-insensitive), else `default`."""
    held = {role.strip().casefold() for role in token_roles}
    return next((role for role in ROLES if role in held), default)


def may_change_tasks(identity: Identity) -> bool:
    return identity.role != VIEWER


def refusal(identity: Identity) -> str:
    """Why a change was refused, in words for the user."""
    return f"Not allowed: your role ({identity.role}) lets you see tasks, not change them"
