"""Other services verify our tokens with their own JWT library: here PyJWT,
fetching the JWKS and the discovery document over HTTP from the running
service (scripts/test.sh serves it and sets E2E_BASE_URL). Nothing of ours
takes part in the verification."""

import json
import os
import random
import urllib.request

import jwt
import pytest

BASE = os.environ.get("E2E_BASE_URL")
pytestmark = pytest.mark.skipif(not BASE, reason="needs the served functions (make test)")


def call(method, path, body=None, bearer=None):
    request = urllib.request.Request(BASE + path, method=method)
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("content-type", "application/json")
    if bearer:
        request.add_header("authorization", f"Bearer {bearer}")
    with urllib.request.urlopen(request, timeout=60) as response:
        # HTTPMessage: header names are looked up case-insensitively.
        return response.status, response.headers, json.loads(response.read() or b"null")


def sign_in():
    """A new user, signed in: (phone, send_code's tokens). The +7 900 block is
    Russian mobile numbers, valid in every build (a random +79 number can fall
    in an unassigned range)."""
    phone = f"+7900{random.randrange(10**7):07d}"
    _, _, sent = call("POST", "/users/auth/get_code/", {"phone": phone})
    _, _, tokens = call("POST", "/users/auth/send_code/", {"phone": phone, "password": sent["sms_code"]})
    return phone, tokens


def discovery():
    status, headers, document = call("GET", "/.well-known/openid-configuration")
    assert status == 200
    assert "max-age" in headers.get("Cache-Control", "")
    # As API Gateway's JWT authorizer finds it: the document at
    # <issuer>/.well-known/openid-configuration (scripts/test.sh makes the
    # server's base URL the issuer, as make dev does), the keys beside it.
    assert document["issuer"] == BASE
    assert document["jwks_uri"] == BASE + "/.well-known/jwks.json"
    return document


def test_pyjwt_verifies_access_tokens_with_the_served_jwks():
    phone, tokens = sign_in()
    document = discovery()
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    keys = jwt.PyJWKClient(document["jwks_uri"])
    key = keys.get_signing_key_from_jwt(tokens["access"])
    claims = jwt.decode(
        tokens["access"],
        key,
        algorithms=["RS256"],
        issuer=document["issuer"],
        audience=os.environ.get("E2E_TOKEN_AUDIENCE", "phone-auth"),
        options={"require": ["exp", "iss", "aud", "sub"]},
    )
    # `sub` is the user's own id (the profile's `id`), never the phone.
    _, _, profile = call("GET", "/users/retrieve/", bearer=tokens["access"])
    assert profile["phone"] == phone
    assert claims["sub"] == str(profile["id"]) != phone
    assert claims["token_type"] == "access"
    # The token's kid is listed, with its own thumbprint as kid.
    header = jwt.get_unverified_header(tokens["access"])
    jwk = next(k for k in call("GET", "/.well-known/jwks.json")[2]["keys"] if k["kid"] == header["kid"])
    assert jwt.PyJWK(jwk).key_id == header["kid"]


def test_pyjwt_refuses_a_tampered_token_and_another_algorithm():
    phone, tokens = sign_in()
    document = discovery()
    key = jwt.PyJWKClient(document["jwks_uri"]).get_signing_key_from_jwt(tokens["access"])
    head, payload, signature = tokens["access"].split(".")
    claims = jwt.decode(tokens["access"], key, algorithms=["RS256"], options={"verify_aud": False})
    claims["sub"] = "42"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(f"{head}.{forged}.{signature}", key, algorithms=["RS256"], options={"verify_aud": False})
    # A verifier that allows only RS256 refuses an HS256 token made with the public key as secret.
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(jwt.encode(claims, "secret", algorithm="HS256"), key, algorithms=["RS256"])
