"""All configuration, read once from environment variables into one typed object.

Every variable has a documented default (README, "Configuration"); nothing is read at import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Provider = Literal["openai", "openai-compatible", "offline", "bedrock"]
AuthMode = Literal["hs256", "oidc"]
PROVIDERS: tuple[Provider, ...] = ("openai", "openai-compatible", "offline", "bedrock")
DEFAULT_TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"
DEFAULT_UPLOAD_TYPES = (
    "image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain,text/markdown,text/csv"
)


class SettingsError(ValueError):
    """A configuration variable has a value that cannot work; the message names it."""


class SecretUnavailableError(RuntimeError):
    """A configured SSM parameter could not be read; the message names it (never its value)."""


@dataclass(frozen=True)
class RequestLimits:
    """What one request may ask for: each bounds the work (and storage) a request can cause."""

    max_message_chars: int = 100_000  # text, tags, quoted text, answers, action payloads
    max_title_chars: int = 200
    max_attachments_per_message: int = 10
    max_attachment_bytes_per_turn: int = 30_000_000  # file bytes the model gets in one turn
    max_feedback_items: int = 50
    max_audio_bytes: int = 3_000_000

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RequestLimits:
        """Read the limits; each must be a whole number of at least 1 (SettingsError)."""
        return cls(
            max_message_chars=_count(env, "MAX_MESSAGE_CHARS", cls.max_message_chars),
            max_title_chars=_count(env, "MAX_TITLE_CHARS", cls.max_title_chars),
            max_attachments_per_message=_count(
                env, "MAX_ATTACHMENTS_PER_MESSAGE", cls.max_attachments_per_message
            ),
            max_attachment_bytes_per_turn=_count(
                env, "MAX_ATTACHMENT_BYTES_PER_TURN", cls.max_attachment_bytes_per_turn
            ),
            max_feedback_items=_count(env, "MAX_FEEDBACK_ITEMS", cls.max_feedback_items),
            max_audio_bytes=_count(env, "MAX_AUDIO_BYTES", cls.max_audio_bytes),
        )


@dataclass(frozen=True)
class TokenRules:
    """What a token must satisfy besides its signature, expiry and issuer."""

    audience: str | None = None  # HS256: the `aud` a token must carry (OIDC has its own)
    max_lifetime_seconds: float = 0  # 0: any lifetime
    jwks_max_age_seconds: float = 600  # OIDC: a key the issuer dropped is refused after this

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TokenRules:
        """Read the rules; SettingsError names a variable that is not a number."""
        return cls(
            audience=env.get("AUTH_AUDIENCE") or None,
            max_lifetime_seconds=_number(env, "MAX_TOKEN_LIFETIME_SECONDS", 0),
            jwks_max_age_seconds=_number(env, "OIDC_JWKS_MAX_AGE_SECONDS", 600, minimum=1),
        )


@dataclass(frozen=True)
class ClaimMapping:
    """Which token claims say who the user is: for each, the claim names tried in order (a
    dotted name also reaches into nested claims). The defaults cover Cognito (its groups,
    `custom:tenant`) and plain OIDC (`name`, `locale`, `zoneinfo`, `roles`, `org_id`)."""

    name: tuple[str, ...] = ("name", "preferred_username", "cognito:username")
    locale: tuple[str, ...] = ("locale",)
    time_zone: tuple[str, ...] = ("zoneinfo",)
    tenant: tuple[str, ...] = ("custom:tenant", "org_id", "tenant")
    roles: tuple[str, ...] = ("cognito:groups", "roles")
    default_role: str = "member"  # for a token without a known role (viewer, member)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ClaimMapping:
        """Read the mapping; SettingsError for an unknown DEFAULT_ROLE."""
        default_role = env.get("DEFAULT_ROLE") or cls.default_role
        if default_role not in ("viewer", "member"):
            raise SettingsError("DEFAULT_ROLE must be viewer or member")
        return cls(
            name=_names(env, "CLAIM_NAME", cls.name),
            locale=_names(env, "CLAIM_LOCALE", cls.locale),
            time_zone=_names(env, "CLAIM_TIME_ZONE", cls.time_zone),
            tenant=_names(env, "CLAIM_TENANT", cls.tenant),
            roles=_names(env, "CLAIM_ROLES", cls.roles),
            default_role=default_role,
        )


@dataclass(frozen=True)
class Settings:
    # Storage
    table_name: str = "chatkit-lambda"
    bucket_name: str = "chatkit-lambda-uploads"
    region: str | None = None
    # Model provider
    provider: Provider = "offline"
    model: str = "gpt-4.1-mini"
    title_model: str | None = None
    api_key: str | None = None
    api_key_parameter: str | None = None
    base_url: str | None = None
    transcription_model: str | None = None
    offline_word_delay_seconds: float = 0.03
    model_max_retries: int = 2
    bedrock_model_id: str | None = None  # a model or inference profile id, in `region`
    # Turn bounds: a Lambda keeps running after its client disconnects.
    history_items: int = 30
    max_agent_turns: int = 8
    max_turn_seconds: float = 60.0
    daily_turn_limit: int = 0  # 0: no quota
    limits: RequestLimits = field(default_factory=RequestLimits)
    # Auth: HS256 tokens signed with a shared secret (from SSM), or an OIDC issuer's tokens.
    auth_mode: AuthMode = "hs256"
    auth_secret_parameter: str | None = None
    auth_dev_secret: str | None = None  # local development only
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    tokens: TokenRules = field(default_factory=TokenRules)
    claims: ClaimMapping = field(default_factory=ClaimMapping)
    secrets_max_age_seconds: float = 300.0
    # HTTP and uploads
    max_request_bytes: int = 6_000_000
    upload_max_bytes: int = 20_000_000
    upload_allowed_types: tuple[str, ...] = tuple(DEFAULT_UPLOAD_TYPES.split(","))
    upload_url_seconds: int = 300

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings; raise SettingsError naming the variable when one is invalid."""
        env = os.environ if env is None else env
        api_key = env.get("MODEL_API_KEY") or env.get("OPENAI_API_KEY") or None
        api_key_parameter = env.get("MODEL_API_KEY_PARAMETER") or None
        base_url = env.get("MODEL_BASE_URL") or None
        has_key = bool(api_key or api_key_parameter)
        provider = env.get("MODEL_PROVIDER") or _default_provider(has_key, base_url)
        auth_mode = env.get("AUTH_MODE") or "hs256"
        if auth_mode not in ("hs256", "oidc"):
            raise SettingsError("AUTH_MODE must be hs256 or oidc")
        provider = _check_provider(provider, base_url, has_key)
        bedrock_model_id = env.get("BEDROCK_MODEL_ID") or None
        if provider == "bedrock" and not bedrock_model_id:
            raise SettingsError("BEDROCK_MODEL_ID is required when MODEL_PROVIDER=bedrock")
        return cls(
            table_name=env.get("CHATKIT_TABLE_NAME") or cls.table_name,
            bucket_name=env.get("CHATKIT_BUCKET_NAME") or cls.bucket_name,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            provider=provider,
            model=env.get("MODEL_NAME") or cls.model,
            title_model=env.get("TITLE_MODEL_NAME") or None,
            api_key=api_key,
            api_key_parameter=api_key_parameter,
            base_url=base_url,
            transcription_model=env.get("TRANSCRIPTION_MODEL_NAME")
            or (DEFAULT_TRANSCRIPTION_MODEL if provider == "openai" else None),
            offline_word_delay_seconds=_number(env, "OFFLINE_WORD_DELAY_MS", 30) / 1000,
            model_max_retries=int(_number(env, "MODEL_MAX_RETRIES", cls.model_max_retries)),
            bedrock_model_id=bedrock_model_id,
            history_items=int(_number(env, "HISTORY_ITEMS", cls.history_items, minimum=1)),
            max_agent_turns=int(_number(env, "MAX_AGENT_TURNS", cls.max_agent_turns, minimum=1)),
            max_turn_seconds=_number(env, "MAX_TURN_SECONDS", cls.max_turn_seconds, minimum=1),
            daily_turn_limit=int(_number(env, "DAILY_TURN_LIMIT", cls.daily_turn_limit)),
            limits=RequestLimits.from_env(env),
            auth_mode=auth_mode,  # type: ignore[arg-type]
            auth_secret_parameter=env.get("AUTH_SECRET_PARAMETER") or None,
            auth_dev_secret=env.get("AUTH_DEV_SECRET") or None,
            oidc_issuer=env.get("OIDC_ISSUER") or None,
            oidc_audience=env.get("OIDC_AUDIENCE") or None,
            oidc_jwks_url=env.get("OIDC_JWKS_URL") or None,
            tokens=TokenRules.from_env(env),
            claims=ClaimMapping.from_env(env),
            secrets_max_age_seconds=_number(
                env, "SECRETS_MAX_AGE_SECONDS", cls.secrets_max_age_seconds
            ),
            max_request_bytes=int(
                _number(env, "MAX_REQUEST_BYTES", cls.max_request_bytes, minimum=1024)
            ),
            upload_max_bytes=int(_number(env, "UPLOAD_MAX_BYTES", cls.upload_max_bytes, minimum=1)),
            upload_allowed_types=tuple(
                kind.strip().lower()
                for kind in (env.get("UPLOAD_ALLOWED_TYPES") or DEFAULT_UPLOAD_TYPES).split(",")
                if kind.strip()
            ),
            upload_url_seconds=int(
                _number(env, "UPLOAD_URL_SECONDS", cls.upload_url_seconds, minimum=30)
            ),
        )


def _check_provider(provider: str, base_url: str | None, has_key: bool) -> Provider:
    if provider not in PROVIDERS:
        raise SettingsError(f"MODEL_PROVIDER must be one of {', '.join(PROVIDERS)}")
    if provider == "openai-compatible" and not base_url:
        raise SettingsError("MODEL_BASE_URL is required when MODEL_PROVIDER=openai-compatible")
    if provider == "openai" and not has_key:
        raise SettingsError(
            "MODEL_API_KEY_PARAMETER (or MODEL_API_KEY / OPENAI_API_KEY) is required "
            "for MODEL_PROVIDER=openai"
        )
    return provider


def _default_provider(has_key: bool, base_url: str | None) -> Provider:
    if base_url:
        return "openai-compatible"
    return "openai" if has_key else "offline"


def _number(env: Mapping[str, str], name: str, default: float, minimum: float = 0) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum:g}")
    return value


def _names(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Claim names, comma-separated; unset or empty: `default`."""
    names = tuple(part.strip() for part in (env.get(name) or "").split(",") if part.strip())
    return names or default


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    """A limit: a whole number of at least 1."""
    return int(_number(env, name, default, minimum=1))
