"""The per-request context every Store call receives."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from store.keys import check_id
from store.turns import Turn


@dataclass(frozen=True, slots=True)
class Identity:
    """What the verified token says about the user besides their id (see handlers.auth):
    never taken from request data. `role` is the one role the server acts on (a token
    without a known role gets the configured default); `roles` are the token's own."""

    name: str | None = None
    locale: str | None = None
    time_zone: str | None = None  # an IANA time zone name the server knows; None: UTC
    tenant: str | None = None  # the tenant or organisation
    roles: tuple[str, ...] = ()
    role: str = "member"


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who is asking. `user_id` and `identity` come from the verified token only, never from
    request data.

    `new_ids` are the ids generated for this request whose rows are not written yet: the
    store creates those rows only if they do not exist. `turn` is set on the context of a
    request that answers in a thread (see `for_turn`): the store then takes, checks and
    gives back that thread's lease.

    Raises InvalidIdError when the user id is empty, too long or contains the key separator.
    """

    user_id: str
    request_id: str | None = None
    identity: Identity = field(default_factory=Identity, compare=False)
    turn: Turn | None = field(default=None, compare=False, repr=False)
    new_ids: set[str] = field(default_factory=set, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_id(self.user_id, "user")

    def for_turn(self, turn: Turn) -> RequestContext:
        """A copy of this context for one turn (the caller's context is left as it is)."""
        return replace(self, turn=turn, new_ids=set())
