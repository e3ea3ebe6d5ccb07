"""Development tokens: `scripts/token` mints an HS256 token for a user, signed with the local
dev secret, and the tests and dev tools mint theirs with `mint_token`.

In production your own backend mints these tokens with the secret stored in SSM (the stack's
AuthSecretParameter); the function only verifies them (`handlers.auth`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt

TOKEN_HOURS = 12
DEFAULT_USER = "local-user"
REPO_ROOT = Path(__file__).resolve().parents[1]
SECRET_FILE_ENV = "CHATKIT_DEV_SECRET_FILE"


def mint_token(
    secret: str,
    user_id: str,
    lifetime_seconds: int = TOKEN_HOURS * 3600,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """An HS256 token for `user_id` with `sub`, `iat` and `exp`, as `handlers.auth` expects,
    plus `claims` (name, locale, zoneinfo, roles…: see the claim mapping)."""
    now = int(time.time())
    payload = {**(claims or {}), "sub": user_id, "iat": now, "exp": now + lifetime_seconds}
    return jwt.encode(payload, secret, "HS256")


def default_secret_file(env: Mapping[str, str] | None = None) -> Path:
    """Where the local server keeps its dev secret: $CHATKIT_DEV_SECRET_FILE or .cache/."""
    env = os.environ if env is None else env
    configured = env.get(SECRET_FILE_ENV)
    return Path(configured) if configured else REPO_ROOT / ".cache" / "dev-secret"


def read_secret(path: Path) -> str | None:
    """The secret kept in `path`, or None when the file is missing or empty."""
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def token_main(argv: Sequence[str] | None = None) -> int:
    """`scripts/token`: print an HS256 token signed with the local dev secret."""
    parser = argparse.ArgumentParser(
        prog="scripts/token",
        description=(
            "Print an HS256 token for a user, signed with the local dev secret "
            "(--secret-file, else AUTH_DEV_SECRET, else the file ./scripts/serve created). "
            "In production your own backend mints these tokens, with the secret it shares "
            "with the function through SSM (AUTH_SECRET_PARAMETER)."
        ),
    )
    parser.add_argument(
        "--user", default=DEFAULT_USER, help=f"the token's sub (default {DEFAULT_USER})"
    )
    parser.add_argument(
        "--hours", type=float, default=TOKEN_HOURS, help=f"lifetime (default {TOKEN_HOURS})"
    )
    parser.add_argument("--secret-file", type=Path, help="file holding the HS256 secret")
    parser.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an identity claim, repeatable: name, locale, zoneinfo, roles (comma-separated), "
        "org_id… (see the claim mapping)",
    )
    options = parser.parse_args(argv)
    claims: dict[str, Any] = {}
    for claim in options.claim:
        name, sep, value = claim.partition("=")
        if not sep or not name:
            parser.error(f"--claim {claim!r}: expected NAME=VALUE")
        claims[name] = value.split(",") if name in ("roles", "cognito:groups") else value
    if options.secret_file is not None:
        secret = read_secret(options.secret_file)
    else:
        secret = os.environ.get("AUTH_DEV_SECRET") or read_secret(default_secret_file())
    if not secret:
        where = options.secret_file or default_secret_file()
        print(
            f"no secret: {where} is missing or empty and AUTH_DEV_SECRET is not set "
            "(./scripts/serve creates the file on its first start)",
            file=sys.stderr,
        )
        return 1
    print(mint_token(secret, options.user, int(options.hours * 3600), claims))
    return 0


if __name__ == "__main__":
    sys.exit(token_main())
