"""All configuration: one typed object, every field with its default, its variable and its check.

`Settings.from_env()` reads the environment (and a `.env` file when given one) through
pydantic-settings; a value that cannot work is a `SettingsError` naming its variable.
`Settings(...)` takes values by field name and reads nothing (tests, the local server's
overrides). Nothing is read at import. The README's configuration table lists every variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

Provider = Literal["openai", "openai-compatible", "offline", "bedrock"]
# The reasoning settings of OpenAI's reasoning models (openai.types.shared.Reasoning).
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]
ReasoningSummary = Literal["auto", "concise", "detailed"]
AuthMode = Literal["hs256", "oidc"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
PROVIDERS: tuple[Provider, ...] = ("openai", "openai-compatible", "offline", "bedrock")
DEFAULT_TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"
DEFAULT_SERVICE_NAME = "chatkit-lambda"
# The key of the pseudonymous user id when LOG_USER_ID_KEY is unset (local development): the
# stack sets its own, so ids from different deployments cannot be matched.
DEVELOPMENT_USER_ID_KEY = "chatkit-lambda-development"
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


@dataclass(frozen=True)
class TokenRules:
    """What a token must satisfy besides its signature, expiry and issuer."""

    audience: str | None = None  # HS256: the `aud` a token must carry (OIDC has its own)
    max_lifetime_seconds: float = 0  # 0: any lifetime
    jwks_max_age_seconds: float = 600  # OIDC: a key the issuer dropped is refused after this


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


def env(*names: str) -> AliasChoices:
    """The variable(s) a field is read from, the first one set winning."""
    return AliasChoices(*names)


# Counts and sizes: whole numbers of at least 1.
Count = Annotated[int, Field(ge=1)]
# Claim names, comma-separated in their variable.
Names = Annotated[tuple[str, ...], NoDecode]
CLAIMS = ClaimMapping()


class Settings(BaseSettings):
    """Every setting the code reads. Field names are the code's; `env` names the variable."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        env_ignore_empty=True,  # an empty variable (a template parameter left blank) is unset
        case_sensitive=True,
    )

    # Storage
    table_name: str = Field(default="chatkit-lambda", validation_alias=env("CHATKIT_TABLE_NAME"))
    bucket_name: str = Field(
        default="chatkit-lambda-uploads", validation_alias=env("CHATKIT_BUCKET_NAME")
    )
    region: str | None = Field(
        default=None, validation_alias=env("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    # Model provider; unset: openai-compatible with a base URL, openai with a key, else offline
    provider: Provider = Field(default="offline", validation_alias=env("MODEL_PROVIDER"))
    model: str = Field(default="gpt-4.1-mini", validation_alias=env("MODEL_NAME"))
    title_model: str | None = Field(default=None, validation_alias=env("TITLE_MODEL_NAME"))
    api_key: str | None = Field(
        default=None, validation_alias=env("MODEL_API_KEY", "OPENAI_API_KEY")
    )
    api_key_parameter: str | None = Field(
        default=None, validation_alias=env("MODEL_API_KEY_PARAMETER")
    )
    base_url: str | None = Field(default=None, validation_alias=env("MODEL_BASE_URL"))
    # Unset: gpt-4o-mini-transcribe with openai, no dictation otherwise (see `_implied`)
    transcription_model: str | None = Field(
        default=None, validation_alias=env("TRANSCRIPTION_MODEL_NAME")
    )
    offline_word_delay_ms: float = Field(
        default=30, ge=0, validation_alias=env("OFFLINE_WORD_DELAY_MS")
    )
    model_max_retries: int = Field(default=2, ge=0, validation_alias=env("MODEL_MAX_RETRIES"))
    # Reasoning models only (openai, openai-compatible): unset, no reasoning setting is sent
    reasoning_effort: ReasoningEffort | None = Field(
        default=None, validation_alias=env("MODEL_REASONING_EFFORT")
    )
    reasoning_summary: ReasoningSummary | None = Field(
        default=None, validation_alias=env("MODEL_REASONING_SUMMARY")
    )
    # A model or inference profile id, in `region`; required with the bedrock provider
    bedrock_model_id: str | None = Field(default=None, validation_alias=env("BEDROCK_MODEL_ID"))
    # Turn bounds: a Lambda keeps running after its client disconnects.
    history_items: Count = Field(default=30, validation_alias=env("HISTORY_ITEMS"))
    max_agent_turns: Count = Field(default=8, validation_alias=env("MAX_AGENT_TURNS"))
    max_turn_seconds: float = Field(default=60.0, ge=1, validation_alias=env("MAX_TURN_SECONDS"))
    # Per-user turns per UTC day; 0: no quota
    daily_turn_limit: int = Field(default=0, ge=0, validation_alias=env("DAILY_TURN_LIMIT"))
    # What one request may ask for (RequestLimits)
    max_message_chars: Count = Field(default=100_000, validation_alias=env("MAX_MESSAGE_CHARS"))
    max_title_chars: Count = Field(default=200, validation_alias=env("MAX_TITLE_CHARS"))
    max_attachments_per_message: Count = Field(
        default=10, validation_alias=env("MAX_ATTACHMENTS_PER_MESSAGE")
    )
    max_attachment_bytes_per_turn: Count = Field(
        default=30_000_000, validation_alias=env("MAX_ATTACHMENT_BYTES_PER_TURN")
    )
    max_feedback_items: Count = Field(default=50, validation_alias=env("MAX_FEEDBACK_ITEMS"))
    max_audio_bytes: Count = Field(default=3_000_000, validation_alias=env("MAX_AUDIO_BYTES"))
    # Auth: HS256 tokens signed with a shared secret (from SSM), or an OIDC issuer's tokens.
    auth_mode: AuthMode = Field(default="hs256", validation_alias=env("AUTH_MODE"))
    auth_secret_parameter: str | None = Field(
        default=None, validation_alias=env("AUTH_SECRET_PARAMETER")
    )
    # An HS256 secret given directly: local development only
    auth_dev_secret: str | None = Field(default=None, validation_alias=env("AUTH_DEV_SECRET"))
    auth_audience: str | None = Field(default=None, validation_alias=env("AUTH_AUDIENCE"))
    max_token_lifetime_seconds: float = Field(
        default=0, ge=0, validation_alias=env("MAX_TOKEN_LIFETIME_SECONDS")
    )
    oidc_issuer: str | None = Field(default=None, validation_alias=env("OIDC_ISSUER"))
    oidc_audience: str | None = Field(default=None, validation_alias=env("OIDC_AUDIENCE"))
    oidc_jwks_url: str | None = Field(default=None, validation_alias=env("OIDC_JWKS_URL"))
    oidc_jwks_max_age_seconds: float = Field(
        default=600, ge=1, validation_alias=env("OIDC_JWKS_MAX_AGE_SECONDS")
    )
    secrets_max_age_seconds: float = Field(
        default=300.0, ge=0, validation_alias=env("SECRETS_MAX_AGE_SECONDS")
    )
    # Token claims that say who the user is (ClaimMapping), and the role of a token without one
    claim_name: Names = Field(default=CLAIMS.name, validation_alias=env("CLAIM_NAME"))
    claim_locale: Names = Field(default=CLAIMS.locale, validation_alias=env("CLAIM_LOCALE"))
    claim_time_zone: Names = Field(
        default=CLAIMS.time_zone, validation_alias=env("CLAIM_TIME_ZONE")
    )
    claim_tenant: Names = Field(default=CLAIMS.tenant, validation_alias=env("CLAIM_TENANT"))
    claim_roles: Names = Field(default=CLAIMS.roles, validation_alias=env("CLAIM_ROLES"))
    default_role: Literal["viewer", "member"] = Field(
        default="member", validation_alias=env("DEFAULT_ROLE")
    )
    # HTTP and uploads
    max_request_bytes: int = Field(
        default=6_000_000, ge=1024, validation_alias=env("MAX_REQUEST_BYTES")
    )
    upload_max_bytes: Count = Field(default=20_000_000, validation_alias=env("UPLOAD_MAX_BYTES"))
    upload_allowed_types: Annotated[tuple[str, ...], NoDecode] = Field(
        default=tuple(DEFAULT_UPLOAD_TYPES.split(",")), validation_alias=env("UPLOAD_ALLOWED_TYPES")
    )
    upload_url_seconds: int = Field(default=300, ge=30, validation_alias=env("UPLOAD_URL_SECONDS"))
    # The streaming runtime loop: how long before Lambda's deadline a stream is ended
    stream_deadline_margin_ms: float = Field(
        default=2000, ge=0, validation_alias=env("STREAM_DEADLINE_MARGIN_MS")
    )
    # Logs and metrics (Powertools). Lambda's AWS_LAMBDA_LOG_LEVEL, when set, wins over the level.
    log_level: LogLevel = Field(
        default="INFO", validation_alias=env("POWERTOOLS_LOG_LEVEL", "LOG_LEVEL")
    )
    service_name: str = Field(
        default=DEFAULT_SERVICE_NAME, validation_alias=env("POWERTOOLS_SERVICE_NAME")
    )
    metrics_namespace: str = Field(
        default="ChatKitLambda", validation_alias=env("POWERTOOLS_METRICS_NAMESPACE")
    )
    log_user_id_key: str = Field(
        default=DEVELOPMENT_USER_ID_KEY, validation_alias=env("LOG_USER_ID_KEY"), repr=False
    )
    # Tracing (X-Ray): Powertools' rule, on Lambda but not in SAM's emulator, unless disabled.
    trace_disabled: bool = Field(default=False, validation_alias=env("POWERTOOLS_TRACE_DISABLED"))
    lambda_task_root: str | None = Field(default=None, validation_alias=env("LAMBDA_TASK_ROOT"))
    sam_local: bool = Field(default=False, validation_alias=env("AWS_SAM_LOCAL"))

    @field_validator("upload_allowed_types", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(kind.strip().lower() for kind in value.split(",") if kind.strip())
        return value

    @field_validator(
        "claim_name",
        "claim_locale",
        "claim_time_zone",
        "claim_tenant",
        "claim_roles",
        mode="before",
    )
    @classmethod
    def _claim_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _implied(cls, data: Any) -> Any:
        """The provider the key and base URL imply when none is named, and its dictation model."""
        if not isinstance(data, dict):
            return data
        given = _by_field_name(cls, data)
        if "provider" not in given:
            has_key = bool(given.get("api_key") or given.get("api_key_parameter"))
            implied = "openai" if has_key else "offline"
            given["provider"] = "openai-compatible" if given.get("base_url") else implied
        if given["provider"] == "openai":
            given.setdefault("transcription_model", DEFAULT_TRANSCRIPTION_MODEL)
        return given

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        """The provider's requirements."""
        provider = self.provider
        if provider == "openai-compatible" and not self.base_url:
            raise ValueError("MODEL_BASE_URL is required when MODEL_PROVIDER=openai-compatible")
        if provider == "openai" and not (self.api_key or self.api_key_parameter):
            raise ValueError(
                "MODEL_API_KEY_PARAMETER (or MODEL_API_KEY / OPENAI_API_KEY) is required "
                "for MODEL_PROVIDER=openai"
            )
        if provider == "bedrock" and not self.bedrock_model_id:
            raise ValueError("BEDROCK_MODEL_ID is required when MODEL_PROVIDER=bedrock")
        return self

    @property
    def offline_word_delay_seconds(self) -> float:
        return self.offline_word_delay_ms / 1000

    @property
    def limits(self) -> RequestLimits:
        """The request limits: each is the setting of the same name."""
        return RequestLimits(
            **{limit.name: getattr(self, limit.name) for limit in fields(RequestLimits)}
        )

    @property
    def claims(self) -> ClaimMapping:
        return ClaimMapping(
            name=self.claim_name or CLAIMS.name,
            locale=self.claim_locale or CLAIMS.locale,
            time_zone=self.claim_time_zone or CLAIMS.time_zone,
            tenant=self.claim_tenant or CLAIMS.tenant,
            roles=self.claim_roles or CLAIMS.roles,
            default_role=self.default_role,
        )

    @property
    def tokens(self) -> TokenRules:
        return TokenRules(
            audience=self.auth_audience,
            max_lifetime_seconds=self.max_token_lifetime_seconds,
            jwks_max_age_seconds=self.oidc_jwks_max_age_seconds,
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """`Settings(...)` takes its values as given: the environment is read by `from_env`."""
        return (init_settings,)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, env_file: Path | None = None
    ) -> Settings:
        """The settings from `environ` (default: the process environment), then from
        `env_file` (`NAME=value` lines) for what the environment leaves unset.

        Raises SettingsError naming the variable when a value cannot work.
        """
        sources: list[PydanticBaseSettingsSource] = [
            EnvSettingsSource(cls) if environ is None else _MappingSource(cls, environ)
        ]
        if env_file is not None:
            sources.append(DotEnvSettingsSource(cls, env_file=env_file))
        known = {key for name in cls.model_fields for key in (name, *variables(cls, name))}
        values: dict[str, Any] = {}
        for source in reversed(sources):  # the first source wins
            # A .env file may hold other tools' variables too: only settings are taken.
            values.update((key, value) for key, value in source().items() if key in known)
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise SettingsError(_describe(error)) from None


def variables(settings_cls: type[BaseSettings], name: str) -> list[str]:
    """The variables field `name` is read from, in order."""
    alias = settings_cls.model_fields[name].validation_alias
    choices = alias.choices if isinstance(alias, AliasChoices) else []
    return [choice for choice in choices if isinstance(choice, str)]


def _by_field_name(settings_cls: type[BaseSettings], data: dict[str, Any]) -> dict[str, Any]:
    """`data` keyed by field name, whether it was keyed by field name or by variable (a key
    that is neither stays, for validation to refuse)."""
    given = dict(data)
    for name in settings_cls.model_fields:
        for key in reversed([name, *variables(settings_cls, name)]):  # the first one wins
            if key in given:
                given[name] = given.pop(key)
    return given


class _MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = {name: value for name, value in environ.items() if value != ""}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return dict(self._environ)


def _describe(error: ValidationError) -> str:
    """The first problem, naming its variable: "HISTORY_ITEMS: Input should be ... ('many')"."""
    problem = error.errors()[0]
    message = problem["msg"].removeprefix("Value error, ")
    if not problem["loc"]:
        return message
    name = str(problem["loc"][0])
    where = " / ".join(variables(Settings, name)) if name in Settings.model_fields else name
    return f"{where}: {message} (got {problem['input']!r})"
