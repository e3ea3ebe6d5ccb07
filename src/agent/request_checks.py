"""What is checked before the SDK dispatches a request, so a refused request writes nothing.

The SDK saves a new thread, the user's message and its attachments before the agent answers:
a limit, a file that was never uploaded or a spent quota found after that would leave them
behind. `RequestChecks.admit` finds them first: the request limits (no I/O), then the objects
the request names (one read each), then the daily quota (one conditional write).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol

from chatkit.types import (
    Attachment,
    ClientToolCallItem,
    StructuredInputItem,
    ThreadItem,
    UserMessageItem,
    WidgetItem,
)

from agent.request_limits import QUOTA_TYPES, CheckedRequest, checked_request
from errors import InvalidRequestError, QuotaExceededError
from settings import RequestLimits
from store import DynamoDBStore, RequestContext
from store.quota import TurnQuota


class UploadChecker(Protocol):
    """Says whether the file of an attachment was uploaded (S3 in production)."""

    async def exists(self, attachment: Attachment, context: RequestContext) -> bool: ...


class TranscriptionUnavailableError(InvalidRequestError):
    """Dictation was requested but the configured provider cannot transcribe."""


@dataclass(frozen=True)
class RequestChecks:
    """The checks a request passes before dispatch; each refusal is a ClientRequestError
    (or NotFoundError for an object the caller does not have)."""

    store: DynamoDBStore
    limits: RequestLimits
    uploads: UploadChecker | None = field(default=None, kw_only=True)
    quota: TurnQuota | None = field(default=None, kw_only=True)
    # The provider's name when it cannot transcribe (None: it can).
    transcription_provider: str | None = field(default=None, kw_only=True)

    async def admit(self, body: str | bytes | bytearray, context: RequestContext) -> CheckedRequest:
        """The request to dispatch (duplicate ids removed), once every check passed."""
        request = await checked_request(body, self.limits)
        await self._check_references(request, context)
        if request.type in QUOTA_TYPES:
            await self._take_quota(context)
        return request

    async def _check_references(self, request: CheckedRequest, context: RequestContext) -> None:
        params = request.params
        match request.type:
            case "threads.create" | "threads.add_user_message":
                if request.type == "threads.add_user_message" and self.quota is not None:
                    # Before the quota counts a turn: an unknown thread is refused uncounted.
                    await self.store.load_thread(params["thread_id"], context)
                for attachment_id in _attachment_ids(params):
                    await self._check_attachment(attachment_id, context)
            case "threads.retry_after_item":
                item = await self._named_item(params, context)
                if item is not None and not isinstance(item, UserMessageItem):
                    raise InvalidRequestError("Only a user message can be retried.")
            case "threads.add_structured_input":
                item = await self._named_item(params, context)
                if item is not None and not (
                    isinstance(item, StructuredInputItem) and item.status == "pending"
                ):
                    raise InvalidRequestError("That item is not a question waiting for answers.")
            case "threads.add_client_tool_output":
                await self._check_pending_tool_call(params, context)
            case "threads.sync_custom_action" if params.get("item_id") is not None:
                item = await self._named_item(params, context)
                if item is not None and not isinstance(item, WidgetItem):
                    raise InvalidRequestError("Actions can only come from a widget.")
            case "input.transcribe" if self.transcription_provider is not None:
                raise TranscriptionUnavailableError(
                    "Dictation is not available with the "
                    f"{self.transcription_provider} model provider."
                )
            case _:
                pass

    async def _check_attachment(self, attachment_id: str, context: RequestContext) -> None:
        attachment = await self.store.load_attachment(attachment_id, context)
        if self.uploads is not None and not await self.uploads.exists(attachment, context):
            raise InvalidRequestError(
                f"The file {attachment.name} was never uploaded (or its upload expired)."
            )

    async def _named_item(
        self, params: dict[str, Any], context: RequestContext
    ) -> ThreadItem | None:
        """The item `params` names (NotFoundError if the caller has none), or None when the
        ids are malformed (the SDK's validation reports those)."""
        thread_id, item_id = params.get("thread_id"), params.get("item_id")
        if not isinstance(thread_id, str) or not isinstance(item_id, str):
            return None
        return await self.store.load_item(thread_id, item_id, context)

    async def _check_pending_tool_call(
        self, params: dict[str, Any], context: RequestContext
    ) -> None:
        thread_id = params.get("thread_id")
        if not isinstance(thread_id, str):
            return
        await self.store.load_thread(thread_id, context)  # NotFoundError for another's thread
        newest = await self.store.load_thread_items(thread_id, None, 1, "desc", context)
        if not any(
            isinstance(item, ClientToolCallItem) and item.status == "pending"
            for item in newest.data
        ):
            raise InvalidRequestError("No client tool call in this thread is waiting for output.")

    async def _take_quota(self, context: RequestContext) -> None:
        if self.quota is None or await self.quota.take(context):
            return
        now = datetime.now(UTC)
        midnight = datetime.combine(now.date() + timedelta(days=1), time(), UTC)
        raise QuotaExceededError(
            f"You have reached today's limit of {self.quota.limit} messages (dictation "
            "included). It resets at midnight UTC.",
            retry_after_seconds=max(1, int((midnight - now).total_seconds())),
        )


def _attachment_ids(params: dict[str, Any]) -> list[str]:
    user_input = params.get("input")
    ids = user_input.get("attachments") if isinstance(user_input, dict) else None
    return [item for item in ids if isinstance(item, str)] if isinstance(ids, list) else []
