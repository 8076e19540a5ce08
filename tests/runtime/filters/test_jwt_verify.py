"""runtime/filters/jwt_verify.py: parsing with Envoy's failure words, time and audience
checks, key sets and signatures; never an exception for any input."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from mosnx.runtime.filters import jwt_verify as V

from .jwtkit import ISS, Keys, unsigned

K = Keys()
KEYS = V.load_jwks(K.jwks("rsa", "ec", "hs"), allow_hmac=True)


def test_parse_reads_header_and_payload():
    tok = V.parse(K.token())
    assert isinstance(tok, V.Token)
    assert (tok.alg, tok.issuer, tok.header["kid"], tok.payload["sub"]) == ("RS256", ISS, "rsa1", "alice")


def test_parse_failures():
    assert V.parse("a.b") == V.Failure(V.BAD_FORMAT)
    assert V.parse("e30.e30.e30.e30") == V.Failure(V.BAD_FORMAT)
    assert V.parse(unsigned({"iss": "x"})) == V.Failure(V.HEADER_ALG_NOT_SUPPORTED)
    assert V.parse("e30.e30.") == V.Failure(V.HEADER_BAD_ALG)                     # {} has no alg
    h = "eyJhbGciOiJSUzI1NiJ9"                                                    # {"alg":"RS256"}
    assert V.parse(f"{h}.!!.sig") == V.Failure(V.PAYLOAD_BAD_BASE64)
    assert V.parse(f"{h}.bm90IGpzb24.c2ln") == V.Failure(V.PAYLOAD_BAD_JSON)     # "not json"
    assert V.parse(raw({"iss": 7})) == V.Failure(V.ISS_NOT_STRING)
    assert V.parse(raw({"aud": [1]})) == V.Failure(V.AUD_NOT_STRING)
    assert V.parse(raw({"exp": True})) == V.Failure("Jwt payload [exp] field is not an integer")
    assert isinstance(V.parse(raw({"iss": "x"})), V.Token)


def raw(payload: dict) -> str:
    def seg(d) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    return f"{seg({'alg': 'RS256'})}.{seg(payload)}.c2ln"


def test_time_checks_with_skew():
    tok = V.parse(K.token(exp=1000, nbf=900))
    assert V.check_time(tok, 950, 0) is None
    assert V.check_time(tok, 1001, 0) == V.Failure(V.EXPIRED)
    assert V.check_time(tok, 1001, 60) is None
    assert V.check_time(tok, 850, 0) == V.Failure(V.NOT_YET_VALID)
    assert V.Failure(V.AUDIENCE_NOT_ALLOWED).status == 403 and V.Failure(V.EXPIRED).status == 401


def test_signatures():
    assert V.verify_signature(V.parse(K.token("ES256", "ec1")), KEYS) is None
    assert V.verify_signature(V.parse(K.token("HS256", "hs1")), KEYS) is None
    assert V.verify_signature(V.parse(K.token(key=K.rsa_other)), KEYS) == V.Failure(V.VERIFICATION_FAILS)
    assert V.verify_signature(V.parse(K.token(kid="zz")), KEYS) == V.Failure(V.KID_ALG_MISMATCH)
    # an HS256 token signed with the RSA public key as the secret (the old alg confusion)
    pem = K.rsa.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    h = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": "rsa1"}).encode()).rstrip(b"=")
    p = base64.urlsafe_b64encode(json.dumps({"iss": ISS}).encode()).rstrip(b"=")
    sig = base64.urlsafe_b64encode(hmac.new(pem, h + b"." + p, hashlib.sha256).digest()).rstrip(b"=")
    forged = V.parse((h + b"." + p + b"." + sig).decode())
    rsa_only = V.load_jwks(K.jwks("rsa"), allow_hmac=True)
    assert V.verify_signature(forged, rsa_only) == V.Failure(V.KID_ALG_MISMATCH)


def test_key_sets():
    assert V.load_jwks("nope", True) == V.Failure(V.JWKS_PARSE_ERROR)
    assert V.load_jwks("{}", True) == V.Failure(V.JWKS_NO_KEYS)
    assert V.load_jwks('{"keys": [{"kty": "RSA", "n": "x"}]}', True) == V.Failure(V.JWKS_NO_VALID_KEYS)
    assert V.load_jwks(K.jwks("hs"), allow_hmac=False) == V.Failure(V.JWKS_NO_VALID_KEYS)
    both = V.load_jwks(K.jwks("rsa", "hs"), allow_hmac=False)
    assert isinstance(both, V.KeySet) and [k.kid for k in both.keys] == ["rsa1"]


def test_audience_normalisation():
    assert V.normalize_audience("https://api.example/") == "api.example"
    assert V.normalize_audience("http://a") == "a" and V.normalize_audience("a/") == "a"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.from_regex(r"[A-Za-z0-9_\-]{0,40}\.[A-Za-z0-9_\-]{0,40}\.[A-Za-z0-9_\-]{0,40}"))
def test_any_string_parses_to_a_token_or_a_failure(s):
    got = V.parse(s)
    assert isinstance(got, (V.Token, V.Failure))
    if isinstance(got, V.Token):
        V.check_time(got, 0, 0)
        V.verify_signature(got, KEYS)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
                    max_leaves=12))
def test_any_json_is_a_key_set_or_a_failure(doc):
    assert isinstance(V.load_jwks(json.dumps(doc), True), (V.KeySet, V.Failure))
