"""Every request but /health needs a valid Bearer JWT; the token's `sub` is the user id."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from devtools.tokens import mint_token
from handlers.main import build_app
from store import TableRecord
from tests.handlers.conftest import app_settings

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


async def test_missing_ssm_secret_is_a_clear_error_naming_it(
    table: type[TableRecord], s3: Any
) -> None:
    app = build_app(app_settings(auth_secret_parameter="/chatkit/missing-secret"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        response = await post(client, mint_token(SECRET, "alice"))

    assert response.status_code == 500
    message = response.json()["error"]["message"]
    assert "/chatkit/missing-secret" in message and "ParameterNotFound" in message
    assert "Traceback" not in response.text


# -- OIDC -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def issuer(rsa_key: rsa.RSAPrivateKey) -> Iterator[str]:
    """An OIDC issuer on 127.0.0.1 publishing one RSA key as JWKS."""
    jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwks = json.dumps({"keys": [{**jwk, "kid": "key-1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(jwks)))
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


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
