"""What persists: threads, items and attachment records in DynamoDB, large payloads in S3."""

from store.context import RequestContext
from store.dynamodb_store import DynamoDBStore
from store.errors import (
    InvalidIdError,
    StoreUnavailableError,
    ThreadBusyError,
    ThreadDeletedError,
    ThreadLeaseLostError,
)
from store.payloads import PayloadBucket
from store.table import TableRecord, bind_table, create_table, table_schema
from store.tasks import TaskRecord, TaskStore
from store.turns import Turn

__all__ = [
    "DynamoDBStore",
    "InvalidIdError",
    "PayloadBucket",
    "RequestContext",
    "StoreUnavailableError",
    "TableRecord",
    "TaskRecord",
    "TaskStore",
    "ThreadBusyError",
    "ThreadDeletedError",
    "ThreadLeaseLostError",
    "Turn",
    "bind_table",
    "create_table",
    "table_schema",
]
