"""Keys, JWKS documents and tokens for the jwt_authn tests, made with cryptography and PyJWT."""
from __future__ import annotations

import base64
import json
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, RSAAlgorithm

ISS = "https://issuer.example"


class Keys:
    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.secret = b"a-shared-secret-of-enough-length-for-hs256"

    def jwk(self, which: str) -> dict:
        if which == "rsa":
            d = json.loads(RSAAlgorithm.to_jwk(self.rsa.public_key()))
            d.update(kid="rsa1", alg="RS256")
        elif which == "rsa_noalg":
            d = json.loads(RSAAlgorithm.to_jwk(self.rsa.public_key()))
            d.update(kid="rsa1")
        elif which == "ec":
            d = json.loads(ECAlgorithm.to_jwk(self.ec.public_key()))
            d.update(kid="ec1", alg="ES256")
        elif which == "hs":
            d = json.loads(HMACAlgorithm.to_jwk(self.secret))
            d.update(kid="hs1", alg="HS256")
        else:
            raise ValueError(which)
        return d

    def jwks(self, *which: str) -> str:
        return json.dumps({"keys": [self.jwk(w) for w in which]})

    def token(self, alg: str = "RS256", kid: str | None = "rsa1", key=None, **claims) -> str:
        now = int(time.time())
        payload = {"iss": ISS, "sub": "alice", "aud": "api", "iat": now, "exp": now + 86400}  # a day: some are made when the tests are collected
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        if key is None:
            key = {"RS": self.rsa, "PS": self.rsa, "ES": self.ec, "HS": self.secret}[alg[:2]]
        headers = {"kid": kid} if kid else {}
        return jwt.encode(payload, key, algorithm=alg, headers=headers)


def unsigned(payload: dict) -> str:
    """A token with alg none (which must be refused)."""
    def seg(d: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    return f"{seg({'alg': 'none', 'typ': 'JWT'})}.{seg(payload)}."
