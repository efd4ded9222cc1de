"""CPU per bearer-token check on the request path (`queries.auth.TokenVerifier.verify`),
with a local RS256 token (RSA 2048), no servers:

    .venv/bin/python -m tests.bench.token_check            # 20,000 checks each
    .venv/bin/python -m tests.bench.token_check --checks 2000

Three figures, in process CPU time (`time.process_time`) per check: every check done in
full (the verified-token cache off: header, key lookup, PyJWT's signature and claims
checks), the same token checked again with the cache on (a client's second request and
after), and with the cache on over as many distinct tokens as checks (every one a miss:
the cost of the cache itself on top of a full check).
"""

import argparse
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from shopflow.queries.auth import CACHE_SIZE, TokenVerifier
from shopflow.queries.token_keys import TokenKeys, jwk_thumbprint

ISSUER, AUDIENCE = "bench", "shopflow"


def _per_check_us(verifier: TokenVerifier, tokens: list[str]) -> float:
    started = time.process_time()
    for token in tokens:
        verifier.verify(token)
    return (time.process_time() - started) / len(tokens) * 1e6


def run(checks: int) -> dict[str, float]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = TokenKeys.fixed(key.public_key())
    kid = jwk_thumbprint(key.public_key())

    def verifier(cache_size: int) -> TokenVerifier:
        return TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE, cache_size=cache_size)

    def token(user_id: int) -> str:
        # As `shopflow token` signs them (shopflow.tokens.sign_token), here with the
        # test's own key.
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": str(user_id), "iat": now}
        claims["exp"] = now + 3600
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})

    one = token(42)
    distinct = [token(i + 1) for i in range(checks)]
    _per_check_us(verifier(0), [one] * 200)  # warm-up: imports, OpenSSL's first use
    return {
        "full_check_us": _per_check_us(verifier(0), [one] * checks),
        "cached_same_token_us": _per_check_us(verifier(CACHE_SIZE), [one] * checks),
        "cache_all_misses_us": _per_check_us(verifier(CACHE_SIZE), distinct),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--checks", type=int, default=20_000)
    args = parser.parse_args()
    for name, micros in run(args.checks).items():
        print(f"{name}: {micros:.1f} µs of CPU per check ({args.checks:,} checks)")


if __name__ == "__main__":
    main()
