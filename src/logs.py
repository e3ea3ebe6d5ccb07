"""Logs: the one Powertools logger, JSON on stdout, one line (one CloudWatch event) per record.

Every module logs through `logger`; tracebacks and multi-line messages stay inside their
record's JSON line, and `extra` fields become keys of it. `configure(settings)` (the
composition root calls it) applies the service name and level (`POWERTOOLS_SERVICE_NAME`,
`LOG_LEVEL` / `POWERTOOLS_LOG_LEVEL`; Lambda's advanced logging controls,
`AWS_LAMBDA_LOG_LEVEL`, take precedence, as in Powertools). `route_all_logging(settings)` (the
Lambda entry points call it) sends the standard `logging` records of every other logger
(chatkit, the Agents SDK, botocore) through the same formatter.
"""

from __future__ import annotations

import logging
import sys

from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from settings import DEFAULT_SERVICE_NAME, Settings

logger = Logger(service=DEFAULT_SERVICE_NAME)


def configure(settings: Settings) -> None:
    """The settings' service name (a key of every record) and level."""
    logger.append_keys(service=settings.service_name)
    logger.setLevel(settings.log_level)


def route_all_logging(settings: Settings) -> None:
    """Format every standard `logging` record as one JSON line on stdout, at the settings'
    level (idempotent)."""
    configure(settings)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(LambdaPowertoolsFormatter(service=settings.service_name))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logger.log_level)
    logging.getLogger(logger.name).propagate = False  # its own handler writes it: once
