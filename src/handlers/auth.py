"""Who is calling: a Bearer JWT verified against an HS256 secret or an OIDC issuer's keys.

The token's `sub` becomes `RequestContext.user_id`, the only user id the store ever sees; its
name, locale, time zone, tenant and roles become `RequestContext.identity` (handlers.claims).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio.to_thread
import jwt
from starlette.requests import Request

from handlers.claims import identity_from
from handlers.secrets import SecretParameter
from settings import ClaimMapping, Settings, TokenRules
from store import InvalidIdError, RequestContext

LEEWAY_SECONDS = 30
# RFC 7518 3.2: an HS256 key at least as long as the hash output (32 bytes).
MIN_HS256_SECRET_BYTES = 32
TIME_CLAIMS = ("exp", "nbf", "iat")
# A request id a client may choose (x-request-id): it is logged and quoted in errors.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Asymmetric algorithms only for OIDC: an HS* token signed with the public key is refused.
OIDC_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"]
# What the caller is told when PyJWT refuses a token: the first matching kind.
TOKEN_REFUSALS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidIssuerError, "token issuer is not accepted"),
    (jwt.InvalidAudienceError, "token audience is not accepted"),
    (jwt.exceptions.InvalidSubjectError, "token subject must be a string"),
    (jwt.InvalidAlgorithmError, "token algorithm is not accepted"),
    (jwt.InvalidSignatureError, "token signature is invalid"),
    (jwt.PyJWTError, "malformed token"),
)


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
    """Tokens signed by the user's own app with a shared secret.

    `secret` is asked for on every token (it may be rotated); `source` names where it comes
    from in the configuration error raised when it is too short to be safe.
    """

    def __init__(
        self,
        secret: Callable[[], Awaitable[str]],
        rules: TokenRules | None = None,
        source: str = "the HS256 secret",
    ) -> None:
        self._secret = secret
        self.rules = rules or TokenRules()
        self.source = source

    async def verify(self, token: str) -> dict[str, Any]:
        secret = await self._secret()
        check_secret_length(secret, self.source)
        return _decode(token, secret, ["HS256"], self.rules, audience=self.rules.audience)


class OIDCVerifier:
    """Tokens from an OIDC issuer (Cognito, Auth0, Clerk...), checked with its cached JWKS."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        rules: TokenRules | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.rules = rules = rules or TokenRules()
        # PyJWT's key-set cache only: keys are looked up in the cached set on every token, so a
        # key the issuer removed is refused once the set is older than `jwks_max_age_seconds`.
        # (Its per-key cache would keep a removed key for the life of the container.) An unknown
        # key id refetches the set at most once per cooldown.
        self._keys = jwt.PyJWKClient(
            jwks_url or f"{issuer.rstrip('/')}/.well-known/jwks.json",
            cache_keys=False,
            cache_jwk_set=True,
            lifespan=rules.jwks_max_age_seconds,
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
        claims = _decode(token, signing_key.key, OIDC_ALGORITHMS, self.rules, issuer=self.issuer)
        # ID tokens carry `aud`; Cognito access tokens carry `client_id` instead.
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if self.audience not in audiences and claims.get("client_id") != self.audience:
            raise AuthError("token audience is not accepted")
        return claims


def _decode(
    token: str,
    key: Any,
    algorithms: list[str],
    rules: TokenRules,
    *,
    issuer: str | None = None,
    audience: str | None = None,
) -> dict[str, Any]:
    required = ["exp", "sub"] + (["iss"] if issuer else []) + (["aud"] if audience else [])
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            issuer=issuer,
            audience=audience,
            leeway=LEEWAY_SECONDS,
            options={"require": required, "verify_aud": audience is not None},
        )
    except jwt.MissingRequiredClaimError as error:
        raise AuthError(f"token lacks the {error.claim!r} claim") from None
    except jwt.PyJWTError as error:
        reason = next(words for kind, words in TOKEN_REFUSALS if isinstance(error, kind))
        raise AuthError(reason) from None
    _check_times(claims, rules.max_lifetime_seconds)
    return claims


def _check_times(claims: dict[str, Any], max_lifetime_seconds: float) -> None:
    """Time claims are numbers (PyJWT also takes "9999999999"); the lifetime is bounded."""
    for name in TIME_CLAIMS:
        value = claims.get(name)
        if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise AuthError(f"token {name!r} claim must be a number")
    if max_lifetime_seconds <= 0:
        return
    issued = claims.get("iat", time.time())
    if claims["exp"] - min(issued, time.time()) > max_lifetime_seconds + LEEWAY_SECONDS:
        raise AuthError("token lifetime is longer than this server accepts")


def check_secret_length(secret: str, source: str) -> None:
    """AuthConfigurationError, naming `source`, for an HS256 secret too short to be safe."""
    if len(secret.encode()) < MIN_HS256_SECRET_BYTES:
        raise AuthConfigurationError(
            f"{source} must be at least {MIN_HS256_SECRET_BYTES} bytes long for HS256"
        )


def bearer_authenticator(
    verifier: TokenVerifier, claim_mapping: ClaimMapping | None = None
) -> Callable[[Request], Awaitable[RequestContext]]:
    """The app's authenticator: the caller's RequestContext (its identity read from the token
    through `claim_mapping`), or AuthError (401)."""
    mapping = claim_mapping or ClaimMapping()

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
            return RequestContext(
                user_id=subject,
                request_id=request_id_of(request),
                identity=identity_from(claims, mapping),
            )
        except InvalidIdError:
            raise AuthError("token subject cannot be used as a user id") from None

    return authenticate


def build_verifier(settings: Settings) -> TokenVerifier:
    """The verifier the settings ask for; AuthConfigurationError if they are incomplete or
    the development secret is too short (a secret from SSM is checked when it is read)."""
    rules = settings.tokens
    if settings.auth_mode == "oidc":
        if not settings.oidc_issuer or not settings.oidc_audience:
            raise AuthConfigurationError("AUTH_MODE=oidc needs OIDC_ISSUER and OIDC_AUDIENCE")
        return OIDCVerifier(
            settings.oidc_issuer, settings.oidc_audience, settings.oidc_jwks_url, rules
        )
    if settings.auth_secret_parameter:
        name = settings.auth_secret_parameter
        parameter = SecretParameter(name, settings.secrets_max_age_seconds)
        return HS256Verifier(parameter.get, rules, f"SSM parameter {name} (AUTH_SECRET_PARAMETER)")
    if settings.auth_dev_secret:
        dev_secret = settings.auth_dev_secret
        check_secret_length(dev_secret, "AUTH_DEV_SECRET")

        async def fixed() -> str:
            return dev_secret

        return HS256Verifier(fixed, rules, "AUTH_DEV_SECRET")
    raise AuthConfigurationError(
        "AUTH_MODE=hs256 needs AUTH_SECRET_PARAMETER (or AUTH_DEV_SECRET for local development)"
    )


def request_id_of(request: Request) -> str:
    """The Lambda request id, else a well-formed `x-request-id` header, else a new id."""
    lambda_context = request.scope.get("aws.context")
    request_id = getattr(lambda_context, "aws_request_id", None)
    header = request.headers.get("x-request-id") or ""
    if not request_id and REQUEST_ID.fullmatch(header):
        request_id = header
    return str(request_id or uuid.uuid4().hex)
