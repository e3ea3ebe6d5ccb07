"""The per-request context every Store call receives."""

from __future__ import annotations

from dataclasses import dataclass

from store.errors import InvalidIdError

MAX_USER_ID_LENGTH = 256


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who is asking. `user_id` comes from the verified token only, never from request data.

    Raises InvalidIdError when the user id is empty, too long or contains the key separator.
    """

    user_id: str
    request_id: str | None = None

    def __post_init__(self) -> None:
        if not self.user_id or len(self.user_id) > MAX_USER_ID_LENGTH or "#" in self.user_id:
            raise InvalidIdError("user id must be 1-256 characters without '#'")
