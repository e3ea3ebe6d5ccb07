"""Every request but /health needs a valid Bearer JWT; the token's `sub` is the user id."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from devtools.tokens import mint_token
from handlers.auth import AuthConfigurationError
from handlers.main import build_app
from store import TableRecord
from tests.handlers.conftest import app_settings
from tests.support.local_server import QuietHandler, serving
from tests.support.logs import logged_text

SECRET = "a-development-secret-of-enough-length-123"
LIST = {"type": "threads.list", "params": {}}


@pytest.fixture
def client(table: type[TableRecord], s3: Any) -> Iterator[httpx.AsyncClient]:
    app = build_app(app_settings(auth_dev_secret=SECRET))
    yield httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def post(
    client: httpx.AsyncClient, token: str | None, header: str | None = None
) -> httpx.Response:
    headers = {"authorization": header or f"Bearer {token}"} if (token or header) else {}
    return await client.post("/chatkit", json=LIST, headers=headers)


def signed(
    claims: dict[str, Any], key: Any = SECRET, algorithm: str = "HS256", **headers: Any
) -> str:
    return jwt.encode(claims, key, algorithm, headers=headers or None)


def now() -> int:
    return int(time.time())


async def test_valid_token_is_accepted(client: httpx.AsyncClient) -> None:
    response = await post(client, mint_token(SECRET, "alice"))

    assert response.status_code == 200
    assert response.json()["data"] == []


async def test_health_needs_no_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).status_code == 200


async def test_missing_token_is_a_bare_challenge(client: httpx.AsyncClient) -> None:
    response = await post(client, None)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="chatkit"'
    assert response.json()["error"]["code"] == "unauthorized"


def unsigned(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


BAD_TOKENS = {
    "expired": (lambda: signed({"sub": "alice", "exp": now() - 3600}), "expired"),
    "not yet valid": (
        lambda: signed({"sub": "alice", "exp": now() + 3600, "nbf": now() + 600}),
        "not yet valid",
    ),
    "wrong secret": (
        lambda: signed({"sub": "alice", "exp": now() + 60}, key="x" * 40),
        "signature",
    ),
    "unsigned": (lambda: unsigned({"sub": "alice", "exp": now() + 60}), "algorithm"),
    "no subject": (lambda: signed({"exp": now() + 60}), "'sub'"),
    "no expiry": (lambda: signed({"sub": "alice"}), "'exp'"),
    "garbage": (lambda: "not.a.token", "malformed"),
    "subject with separator": (lambda: signed({"sub": "eve#alice", "exp": now() + 60}), "user id"),
    "numeric subject": (lambda: signed({"sub": 42, "exp": now() + 60}), "sub"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_bad_tokens_are_401_with_a_reason(client: httpx.AsyncClient, case: str) -> None:
    make, reason = BAD_TOKENS[case]

    response = await post(client, make())

    assert response.status_code == 401
    assert reason in response.json()["error"]["message"]
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.mark.parametrize("header", ["Basic YWxpY2U6cHc=", "Bearer", "Bearer    ", "Token abc"])
async def test_malformed_authorization_headers_are_401(
    client: httpx.AsyncClient, header: str
) -> None:
    response = await post(client, None, header=header)

    assert response.status_code == 401


async def test_hs256_secret_comes_from_ssm(table: type[TableRecord], s3: Any) -> None:
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/chatkit/auth-secret", Value=SECRET, Type="SecureString"
    )
    app = build_app(app_settings(auth_secret_parameter="/chatkit/auth-secret"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        assert (await post(client, mint_token(SECRET, "alice"))).status_code == 200
        assert (await post(client, mint_token("y" * 40, "alice"))).status_code == 401


def ssm_secret_client(name: str, value: str | None = None) -> httpx.AsyncClient:
    """A client of the app whose HS256 secret is the SSM parameter `name` (holding `value`;
    missing when None)."""
    if value is not None:
        boto3.client("ssm", region_name="us-east-1").put_parameter(
            Name=name, Value=value, Type="SecureString"
        )
    app = build_app(app_settings(auth_secret_parameter=name))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_missing_ssm_secret_is_a_generic_503_and_named_in_the_logs_only(
    table: type[TableRecord], s3: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with ssm_secret_client("/chatkit/missing-secret") as client:
        response = await post(client, None, header="Bearer anything")

    assert response.status_code == 503
    assert response.headers["retry-after"]
    error = response.json()["error"]
    assert error["code"] == "unavailable" and error["request_id"]
    assert "/chatkit/missing-secret" not in response.text and "SSM" not in response.text
    logs = logged_text(caplog)
    assert "/chatkit/missing-secret" in logs and "ParameterNotFound" in logs


async def test_an_unreadable_secret_is_not_asked_for_again_on_every_request(
    table: type[TableRecord], s3: Any
) -> None:
    from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS

    async with ssm_secret_client("/chatkit/missing-secret") as client:
        first = await post(client, None, header="Bearer anything")
        calls: list[str] = []
        DEFAULT_PROVIDERS["ssm"].client.meta.events.register(
            "before-call.ssm.*", lambda model, **_: calls.append(model.name)
        )
        later = [await post(client, None, header="Bearer anything") for _ in range(5)]

    assert first.status_code == 503 and {r.status_code for r in later} == {503}
    assert calls == []


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # on purpose
async def test_an_hs256_secret_from_ssm_shorter_than_32_bytes_is_refused(
    table: type[TableRecord], s3: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with ssm_secret_client("/chatkit/short-secret", "too-short") as client:
        response = await post(client, mint_token("too-short", "alice"))

    assert response.status_code == 503 and "short" not in response.text
    logs = logged_text(caplog)
    assert "/chatkit/short-secret" in logs and "at least 32 bytes" in logs


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
async def test_time_claims_given_as_strings_are_refused(
    client: httpx.AsyncClient, claim: str
) -> None:
    claims: dict[str, Any] = {"sub": "alice", "exp": now() + 600, "iat": now(), "nbf": now()}
    claims[claim] = str(claims[claim])

    response = await post(client, signed(claims))

    assert response.status_code == 401
    assert f"'{claim}' claim must be a number" in response.json()["error"]["message"]


def rules_client(**rules: Any) -> httpx.AsyncClient:
    app = build_app(app_settings(auth_dev_secret=SECRET, **rules))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_an_audience_when_configured_is_required(table: type[TableRecord], s3: Any) -> None:
    async with rules_client(auth_audience="my-app") as client:
        right = await post(client, signed({"sub": "alice", "exp": now() + 60, "aud": "my-app"}))
        wrong = await post(client, signed({"sub": "alice", "exp": now() + 60, "aud": "other"}))
        none = await post(client, signed({"sub": "alice", "exp": now() + 60}))

    assert right.status_code == 200
    assert wrong.status_code == 401 and "audience" in wrong.json()["error"]["message"]
    assert none.status_code == 401 and "'aud'" in none.json()["error"]["message"]


async def test_a_token_living_longer_than_the_maximum_is_refused(
    table: type[TableRecord], s3: Any
) -> None:
    async with rules_client(max_token_lifetime_seconds=3600) as client:
        hour = await post(client, signed({"sub": "alice", "iat": now(), "exp": now() + 3600}))
        year = await post(client, signed({"sub": "alice", "iat": now(), "exp": now() + 10**8}))
        no_iat = await post(client, signed({"sub": "alice", "exp": now() + 10**8}))

    assert hour.status_code == 200
    assert year.status_code == 401 and "lifetime" in year.json()["error"]["message"]
    assert no_iat.status_code == 401


def test_a_development_secret_shorter_than_32_bytes_stops_the_start() -> None:
    with pytest.raises(AuthConfigurationError, match=r"AUTH_DEV_SECRET.*32 bytes"):
        build_app(app_settings(auth_dev_secret="only-twenty-characters"))


# -- OIDC -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def issuer(rsa_key: rsa.RSAPrivateKey) -> Iterator[str]:
    """An OIDC issuer on 127.0.0.1 publishing one RSA key as JWKS."""
    with serve_jwks([key_entry(rsa_key, "key-1")]) as (url, _):
        yield url


@pytest.fixture
def oidc_client(table: type[TableRecord], s3: Any, issuer: str) -> httpx.AsyncClient:
    app = build_app(app_settings(auth_mode="oidc", oidc_issuer=issuer, oidc_audience="chatkit-app"))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def rs256(rsa_key: rsa.RSAPrivateKey, issuer: str, **claims: Any) -> str:
    body = {"sub": "alice", "iss": issuer, "aud": "chatkit-app", "exp": now() + 300, **claims}
    return jwt.encode(body, rsa_key, "RS256", headers={"kid": claims.pop("kid", "key-1")})


async def test_oidc_token_from_the_issuer_is_accepted(
    oidc_client: httpx.AsyncClient, rsa_key: rsa.RSAPrivateKey, issuer: str
) -> None:
    assert (await post(oidc_client, rs256(rsa_key, issuer))).status_code == 200


async def test_cognito_access_token_with_client_id_is_accepted(
    oidc_client: httpx.AsyncClient, rsa_key: rsa.RSAPrivateKey, issuer: str
) -> None:
    token = jwt.encode(
        {
            "sub": "alice",
            "iss": issuer,
            "client_id": "chatkit-app",
            "token_use": "access",
            "exp": now() + 300,
        },
        rsa_key,
        "RS256",
        headers={"kid": "key-1"},
    )
    assert (await post(oidc_client, token)).status_code == 200


async def test_oidc_wrong_audience_or_issuer_is_refused(
    oidc_client: httpx.AsyncClient, rsa_key: rsa.RSAPrivateKey, issuer: str
) -> None:
    wrong_audience = await post(oidc_client, rs256(rsa_key, issuer, aud="another-app"))
    wrong_issuer = await post(oidc_client, rs256(rsa_key, "https://evil.example"))

    assert (
        wrong_audience.status_code == 401
        and "audience" in wrong_audience.json()["error"]["message"]
    )
    assert wrong_issuer.status_code == 401 and "issuer" in wrong_issuer.json()["error"]["message"]


async def test_oidc_algorithm_confusion_is_refused(
    oidc_client: httpx.AsyncClient, rsa_key: rsa.RSAPrivateKey, issuer: str
) -> None:
    # An HS256 token "signed" with the issuer's public key, a classic forgery.
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    # PyJWT refuses to sign with a PEM as an HMAC key, so the forgery is built by hand.
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing_input = (
        f"{part({'alg': 'HS256', 'typ': 'JWT', 'kid': 'key-1'})}."
        f"{part({'sub': 'alice', 'iss': issuer, 'aud': 'chatkit-app', 'exp': now() + 300})}"
    )
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()

    response = await post(oidc_client, forged)

    assert response.status_code == 401


async def test_oidc_unknown_key_is_refused(oidc_client: httpx.AsyncClient, issuer: str) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        {"sub": "alice", "iss": issuer, "aud": "chatkit-app", "exp": now() + 300},
        other_key,
        "RS256",
        headers={"kid": "key-2"},
    )
    response = await post(oidc_client, token)

    assert response.status_code == 401 and "unknown key" in response.json()["error"]["message"]


class KeySetClock:
    """The clock PyJWT's key-set cache reads, moved by the test instead of by waiting."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


async def test_a_key_the_issuer_removed_is_refused_after_the_key_set_lifetime(
    table: type[TableRecord], s3: Any, rsa_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = KeySetClock()
    monkeypatch.setattr("jwt.jwk_set_cache.time", clock)  # when a key set expires
    monkeypatch.setattr("jwt.api_jwk.time", clock)  # when a key set was fetched
    with serve_jwks([key_entry(rsa_key, "key-1")]) as (issuer, published):
        settings = app_settings(
            auth_mode="oidc",
            oidc_issuer=issuer,
            oidc_audience="chatkit-app",
            oidc_jwks_max_age_seconds=600,
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=build_app(settings)), base_url="http://t"
        ) as client:
            token = rs256(rsa_key, issuer)
            assert (await post(client, token)).status_code == 200
            other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            published[:] = [key_entry(other, "key-2")]  # the issuer rotated key-1 out

            within_lifetime = await post(client, token)
            clock.now += 601
            after_lifetime = await post(client, token)

    assert within_lifetime.status_code == 200
    assert after_lifetime.status_code == 401
    assert "unknown key" in after_lifetime.json()["error"]["message"]


def key_entry(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


@contextmanager
def serve_jwks(keys: list[dict[str, Any]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An OIDC issuer on 127.0.0.1 publishing `keys` (a list the test may change)."""
    published = list(keys)

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            self.send_json(200, {"keys": published})

    with serving(Handler) as url:
        yield url, published
