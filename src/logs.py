"""Logs: the one Powertools logger, JSON on stdout, one line (one CloudWatch event) per record.

Tracebacks and multi-line messages stay inside their record's JSON line, `extra` fields become
keys of it, and the level is `LOG_LEVEL` (or Powertools' `POWERTOOLS_LOG_LEVEL`; Lambda's
advanced logging controls, `AWS_LAMBDA_LOG_LEVEL`, take precedence). `route_all_logging()`
sends the standard `logging` records of every other logger (libraries, modules using
`logging.getLogger`) through the same formatter.
"""

from __future__ import annotations

import logging
import os
import sys

from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "chatkit-lambda"

logger = Logger(service=SERVICE)


def route_all_logging() -> None:
    """Format every standard `logging` record as one JSON line on stdout, at the logger's level."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(LambdaPowertoolsFormatter(service=SERVICE))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logger.log_level)
    logging.getLogger(SERVICE).propagate = False  # its own handler writes it: once, not twice
