"""Who is calling: a Bearer JWT verified against an HS256 secret or an OIDC issuer's keys.

The token's `sub` becomes `RequestContext.user_id`, the only user id the store ever sees.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio.to_thread
import jwt
from starlette.requests import Request

from handlers.secrets import SecretParameter
from settings import Settings
from store import InvalidIdError, RequestContext

LEEWAY_SECONDS = 30
# Asymmetric algorithms only for OIDC: an HS* token signed with the public key is refused.
OIDC_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"]


class AuthError(Exception):
    """The request carries no usable token: answered with 401 and WWW-Authenticate."""

    def __init__(self, description: str, *, token_present: bool = True) -> None:
        super().__init__(description)
        self.description = description
        self.token_present = token_present


class AuthConfigurationError(RuntimeError):
    """Auth is not configured well enough to verify any token."""


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> dict[str, Any]: ...


class HS256Verifier:
    """Tokens signed by the user's own app with a shared secret."""

    def __init__(self, secret: Callable[[], Awaitable[str]]) -> None:
        self._secret = secret

    async def verify(self, token: str) -> dict[str, Any]:
        secret = await self._secret()
        return _decode(token, secret, ["HS256"])


class OIDCVerifier:
    """Tokens from an OIDC issuer (Cognito, Auth0, Clerk...), checked with its cached JWKS."""

    def __init__(self, issuer: str, audience: str, jwks_url: str | None = None) -> None:
        self.issuer = issuer
        self.audience = audience
        self._keys = jwt.PyJWKClient(
            jwks_url or f"{issuer.rstrip('/')}/.well-known/jwks.json",
            cache_keys=True,
            lifespan=3600,
            timeout=5,
        )

    async def verify(self, token: str) -> dict[str, Any]:
        try:
            signing_key = await anyio.to_thread.run_sync(self._keys.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError as error:
            raise AuthConfigurationError(f"could not fetch the issuer's keys: {error}") from None
        except jwt.PyJWKClientError:
            raise AuthError("token signed with an unknown key") from None
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None
        claims = _decode(token, signing_key.key, OIDC_ALGORITHMS, issuer=self.issuer)
        # ID tokens carry `aud`; Cognito access tokens carry `client_id` instead.
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if self.audience not in audiences and claims.get("client_id") != self.audience:
            raise AuthError("token audience is not accepted")
        return claims


def _decode(
    token: str, key: Any, algorithms: list[str], issuer: str | None = None
) -> dict[str, Any]:
    required = ["exp", "sub"] + (["iss"] if issuer else [])
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": required, "verify_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.ImmatureSignatureError:
        raise AuthError("token not yet valid") from None
    except jwt.InvalidIssuerError:
        raise AuthError("token issuer is not accepted") from None
    except jwt.MissingRequiredClaimError as error:
        raise AuthError(f"token lacks the {error.claim!r} claim") from None
    except jwt.exceptions.InvalidSubjectError:
        raise AuthError("token subject must be a string") from None
    except jwt.InvalidAlgorithmError:
        raise AuthError("token algorithm is not accepted") from None
    except jwt.InvalidSignatureError:
        raise AuthError("token signature is invalid") from None
    except jwt.PyJWTError:
        raise AuthError("malformed token") from None
    return claims


def bearer_authenticator(verifier: TokenVerifier) -> Callable[[Request], Awaitable[RequestContext]]:
    """The app's authenticator: the caller's RequestContext, or AuthError (401)."""

    async def authenticate(request: Request) -> RequestContext:
        header = request.headers.get("authorization")
        if not header:
            raise AuthError("missing bearer token", token_present=False)
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("authorization header must be 'Bearer <token>'")
        claims = await verifier.verify(token.strip())
        subject = claims.get("sub")
        if not isinstance(subject, str):
            raise AuthError("token subject must be a string")
        try:
            return RequestContext(user_id=subject, request_id=_request_id(request))
        except InvalidIdError:
            raise AuthError("token subject cannot be used as a user id") from None

    return authenticate


def build_verifier(settings: Settings) -> TokenVerifier:
    """The verifier the settings ask for; AuthConfigurationError if they are incomplete."""
    if settings.auth_mode == "oidc":
        if not settings.oidc_issuer or not settings.oidc_audience:
            raise AuthConfigurationError("AUTH_MODE=oidc needs OIDC_ISSUER and OIDC_AUDIENCE")
        return OIDCVerifier(settings.oidc_issuer, settings.oidc_audience, settings.oidc_jwks_url)
    if settings.auth_secret_parameter:
        return HS256Verifier(
            SecretParameter(settings.auth_secret_parameter, settings.secrets_max_age_seconds).get
        )
    if settings.auth_dev_secret:
        dev_secret = settings.auth_dev_secret

        async def fixed() -> str:
            return dev_secret

        return HS256Verifier(fixed)
    raise AuthConfigurationError(
        "AUTH_MODE=hs256 needs AUTH_SECRET_PARAMETER (or AUTH_DEV_SECRET for local development)"
    )


def _request_id(request: Request) -> str:
    lambda_context = request.scope.get("aws.context")
    request_id = getattr(lambda_context, "aws_request_id", None)
    return str(request_id or request.headers.get("x-request-id") or uuid.uuid4().hex)
