"""JWT parsing and verification for the jwt_authn filter, with Envoy's statuses.

Pure and synchronous: a token, a provider's checks and a key set in, a Failure or
the verified payload out. The cryptography is PyJWT's (its algorithm objects and
PyJWK key loading); what is checked, in which order, and the words of each
failure follow Envoy's jwt_verify library, so a client sees the bodies Envoy
sends (`Jwt is expired`, `Jwt verification fails`, ...). `alg: none` and any
algorithm outside ALGORITHMS are refused; HMAC keys are honoured only from a
local JWKS (a key set loaded with `allow_hmac`).

PyJWT (and the cryptography it loads, some 15 MiB a process) is imported by the two
functions that use it, so a proxy with no jwt_authn filter never loads it.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

MISSING = "Jwt is missing"
NOT_YET_VALID = "Jwt not yet valid"
EXPIRED = "Jwt is expired"
BAD_FORMAT = "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
HEADER_BAD_BASE64 = "Jwt header is an invalid Base64url encoded"
HEADER_BAD_JSON = "Jwt header is an invalid JSON"
HEADER_BAD_ALG = "Jwt header [alg] field is required and must be a string"
HEADER_ALG_NOT_SUPPORTED = "Jwt header [alg] is not supported"
HEADER_BAD_KID = "Jwt header [kid] field is not a string"
PAYLOAD_BAD_BASE64 = "Jwt payload is an invalid Base64url encoded"
PAYLOAD_BAD_JSON = "Jwt payload is an invalid JSON"
ISS_NOT_STRING = "Jwt payload [iss] field is not a string"
SUB_NOT_STRING = "Jwt payload [sub] field is not a string"
AUD_NOT_STRING = "Jwt payload [aud] field is not a string or string list"
SIGNATURE_BAD_BASE64 = "Jwt signature is an invalid Base64url encoded"
UNKNOWN_ISSUER = "Jwt issuer is not configured"
AUDIENCE_NOT_ALLOWED = "Audiences in Jwt are not allowed"
VERIFICATION_FAILS = "Jwt verification fails"
KID_ALG_MISMATCH = "Jwks doesn't have key to match kid or alg from Jwt"
JWKS_FETCH_FAIL = "Jwks remote fetch is failed"
JWKS_PARSE_ERROR = "Jwks is an invalid JSON"
JWKS_NO_KEYS = "Jwks does not have [keys] field"
JWKS_NO_VALID_KEYS = "Jwks doesn't have any valid public key"

ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                        "ES256", "ES384", "ES512", "HS256", "HS384", "HS512", "EdDSA"})
# the key type an algorithm needs (a JWK without "alg" is matched on its kty)
_KTY = {"RS": "RSA", "PS": "RSA", "ES": "EC", "HS": "oct", "Ed": "OKP"}
_INT_CLAIMS = (("exp", "Jwt payload [exp] field is not an integer"),
               ("nbf", "Jwt payload [nbf] field is not an integer"),
               ("iat", "Jwt payload [iat] field is not an integer"))


@dataclass(frozen=True, slots=True)
class Failure:
    """A token (or key set) that does not pass: Envoy's message, which is the reply body."""
    message: str

    @property
    def status(self) -> int:
        return 403 if self.message == AUDIENCE_NOT_ALLOWED else 401


@dataclass(frozen=True, slots=True)
class Token:
    raw: str
    header: dict[str, Any]
    payload: dict[str, Any]
    payload_segment: str          # the payload as the token carries it (base64url, unpadded)
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        return str(self.header["alg"])

    @property
    def issuer(self) -> str:
        return str(self.payload.get("iss", ""))


@dataclass(frozen=True, slots=True)
class Key:
    kid: str | None
    alg: str | None
    kty: str
    key: Any                      # a cryptography key, or bytes for HMAC


@dataclass(frozen=True, slots=True)
class KeySet:
    keys: tuple[Key, ...]

    def candidates(self, kid: str | None, alg: str) -> list[Key]:
        kty = _KTY.get(alg[:2])
        return [k for k in self.keys
                if (kid is None or k.kid is None or k.kid == kid)
                and (k.alg == alg if k.alg else k.kty == kty)]


def _b64(segment: str) -> bytes:
    if not segment or not all(c.isalnum() or c in "-_" for c in segment.rstrip("=")):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def parse(raw: str) -> Token | Failure:
    """Split and decode a compact JWS, checking the fields Envoy checks before keys."""
    parts = raw.split(".")
    if len(parts) != 3:
        return Failure(BAD_FORMAT)
    h64, p64, s64 = parts
    try:
        hb = _b64(h64)
    except (ValueError, binascii.Error):
        return Failure(HEADER_BAD_BASE64)
    try:
        header = json.loads(hb)
    except ValueError:
        return Failure(HEADER_BAD_JSON)
    if not isinstance(header, dict):
        return Failure(HEADER_BAD_JSON)
    alg = header.get("alg")
    if not isinstance(alg, str):
        return Failure(HEADER_BAD_ALG)
    if alg not in ALGORITHMS:
        return Failure(HEADER_ALG_NOT_SUPPORTED)
    if "kid" in header and not isinstance(header["kid"], str):
        return Failure(HEADER_BAD_KID)
    try:
        pb = _b64(p64)
    except (ValueError, binascii.Error):
        return Failure(PAYLOAD_BAD_BASE64)
    try:
        payload = json.loads(pb)
    except ValueError:
        return Failure(PAYLOAD_BAD_JSON)
    if not isinstance(payload, dict):
        return Failure(PAYLOAD_BAD_JSON)
    for claim, message in (("iss", ISS_NOT_STRING), ("sub", SUB_NOT_STRING)):
        if claim in payload and not isinstance(payload[claim], str):
            return Failure(message)
    for claim, message in _INT_CLAIMS:
        v = payload.get(claim)
        if claim in payload and (isinstance(v, bool) or not isinstance(v, (int, float))):
            return Failure(message)
    aud = payload.get("aud")
    if aud is not None and not isinstance(aud, str) and not (
            isinstance(aud, list) and all(isinstance(a, str) for a in aud)):
        return Failure(AUD_NOT_STRING)
    try:
        sig = _b64(s64)
    except (ValueError, binascii.Error):
        return Failure(SIGNATURE_BAD_BASE64)
    return Token(raw, header, payload, p64, f"{h64}.{p64}".encode("ascii"), sig)


def audiences(token: Token) -> list[str]:
    aud = token.payload.get("aud")
    if aud is None:
        return []
    return [aud] if isinstance(aud, str) else list(aud)


def normalize_audience(aud: str) -> str:
    """As Envoy compares audiences: without an http(s):// scheme and a trailing slash."""
    for scheme in ("https://", "http://"):
        if aud.startswith(scheme):
            aud = aud[len(scheme):]
            break
    return aud[:-1] if aud.endswith("/") else aud


def check_time(token: Token, now: float, skew: float) -> Failure | None:
    nbf = token.payload.get("nbf")
    if nbf is not None and now + skew < nbf:
        return Failure(NOT_YET_VALID)
    exp = token.payload.get("exp")
    if exp is not None and now > exp + skew:
        return Failure(EXPIRED)
    return None


def verify_signature(token: Token, keys: KeySet) -> Failure | None:
    """None when one of the key set's keys that fit the token's kid and alg signed it."""
    kid = token.header.get("kid")
    candidates = keys.candidates(kid, token.alg)
    if not candidates:
        return Failure(KID_ALG_MISMATCH)
    import jwt
    from jwt.exceptions import PyJWTError
    algo = jwt.get_algorithm_by_name(token.alg)
    for k in candidates:
        try:
            if algo.verify(token.signing_input, k.key, token.signature):
                return None
        except (PyJWTError, ValueError, TypeError):
            continue
    return Failure(VERIFICATION_FAILS)


def load_jwks(text: str | bytes, allow_hmac: bool) -> KeySet | Failure:
    """A key set from a JWKS document (or one bare JWK). Keys PyJWT cannot load are
    skipped, as Envoy skips them; a set left empty is a failure."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return Failure(JWKS_PARSE_ERROR)
    if isinstance(doc, dict) and "keys" not in doc and "kty" in doc:
        doc = {"keys": [doc]}
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        return Failure(JWKS_NO_KEYS)
    import jwt
    from jwt.exceptions import InvalidKeyError, PyJWKError
    keys: list[Key] = []
    for jwk in doc["keys"]:
        if not isinstance(jwk, dict):
            continue
        kty, alg, kid = jwk.get("kty"), jwk.get("alg"), jwk.get("kid")
        if kty == "oct" and not allow_hmac:
            continue                      # a shared secret fetched over the network is no secret
        if alg is not None and (not isinstance(alg, str) or alg not in ALGORITHMS):
            continue
        if kid is not None and not isinstance(kid, str):
            continue
        try:
            pk = jwt.PyJWK(jwk, alg) if alg else jwt.PyJWK(jwk, _default_alg(jwk))
        except (PyJWKError, InvalidKeyError, ValueError, TypeError, KeyError):
            continue
        keys.append(Key(kid, alg, str(kty), pk.key))
    if not keys:
        return Failure(JWKS_NO_VALID_KEYS)
    return KeySet(tuple(keys))


def _default_alg(jwk: dict[str, Any]) -> str:
    """An algorithm PyJWK can load a JWK without "alg" under; the key still serves every
    algorithm of its family (its kty decides, in KeySet.candidates)."""
    kty = jwk.get("kty")
    if kty == "EC":
        return {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}.get(str(jwk.get("crv")), "ES256")
    return {"RSA": "RS256", "oct": "HS256", "OKP": "EdDSA"}.get(str(kty), "RS256")
