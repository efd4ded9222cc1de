# shellcheck shell=bash
# The local credentials of scripts/infra.sh (sourced by it): the servers' passwords, the
# token signing key, the Kafka brokers' CA and certificate, all made at the first start.

CREDENTIALS_FILE="$INFRA_DIR/credentials.json"
TOKEN_KEY="$INFRA_DIR/token-signing-key.pem"
TOKEN_PUBLIC_KEY="$INFRA_DIR/token-signing-key.pub.pem"
KAFKA_CA="$INFRA_DIR/kafka-ca.pem"            # what SASL_SSL clients trust (SHOPFLOW_KAFKA_SSL_CAFILE)
KAFKA_CA_KEY="$INFRA_DIR/kafka-ca.key"        # mode 0600
KAFKA_KEYSTORE="$INFRA_DIR/kafka-broker.pem"  # the brokers' key and certificate chain, mode 0600

# Gives every user named here that has no password in credentials.json a random one
# (the file is made, mode 0600, at the first start), and every user EXTRA_CREDENTIALS
# names as section:user (space-separated: a replicated PostgreSQL's own users). The Kafka
# principals of the contract are added by `shopflow topics create`, which makes their
# SCRAM users.
ensure_credentials() {
    if ! (umask 077 && python3 - "$CREDENTIALS_FILE" "${EXTRA_CREDENTIALS:-}" <<'PY'); then
import json, os, secrets, sys

path = sys.argv[1]
wanted = {
    "kafka": ["broker", "admin"],
    "postgres": ["postgres", "shopflow_owner", "shopflow", "shopflow_reader"],
    "redis": ["admin", "shopflow"],
}
for extra in sys.argv[2].split():
    section, user = extra.split(":", 1)
    wanted.setdefault(section, []).append(user)
try:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
except FileNotFoundError:
    data = {}
changed = False
for section, users in wanted.items():
    entries = data.setdefault(section, {})
    for user in users:
        if user not in entries:
            entries[user] = secrets.token_hex(16)
            changed = True
if changed:
    tmp = f"{path}.tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
os.chmod(path, 0o600)
PY
        die "could not write the local credentials to $CREDENTIALS_FILE"
    fi
}

# Prints the password of user $2 of server $1 (kafka, postgres, redis, and for a replicated
# PostgreSQL etcd and patroni).
credential() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]][sys.argv[3]])' \
        "$CREDENTIALS_FILE" "$1" "$2" || die "no $1 password for $2 in $CREDENTIALS_FILE"
}

# The RSA key pair `shopflow token` signs with and the service started by `make run`
# trusts (SHOPFLOW_AUTH_PUBLIC_KEY_FILE unset). A deployment trusts its identity provider.
ensure_token_key() {
    [[ -s "$TOKEN_KEY" && -s "$TOKEN_PUBLIC_KEY" ]] && return 0
    ensure_command openssl openssl
    if ! (umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
        -out "$TOKEN_KEY.tmp" 2>>"$INFRA_DIR/openssl.log"); then
        die "could not make the token signing key (see $INFRA_DIR/openssl.log)"
    fi
    openssl pkey -in "$TOKEN_KEY.tmp" -pubout -out "$TOKEN_PUBLIC_KEY" 2>>"$INFRA_DIR/openssl.log" ||
        die "could not write the token signing key's public half (see $INFRA_DIR/openssl.log)"
    mv "$TOKEN_KEY.tmp" "$TOKEN_KEY"
}

# A local CA and a certificate for 127.0.0.1 signed by it, made at the first start: the
# brokers' SASL_SSL listener presents it, and clients verify it with kafka-ca.pem
# (hostname checked: the certificate names IP 127.0.0.1 and localhost).
ensure_kafka_tls() {
    [[ -s "$KAFKA_CA" && -s "$KAFKA_KEYSTORE" ]] && return 0
    ensure_command openssl openssl
    local work="$INFRA_DIR/tls.tmp" log="$INFRA_DIR/openssl.log"
    rm -rf "$work"
    (umask 077 && mkdir -p "$work")
    if ! (
        umask 077
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=shopflow local CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout "$work/ca.key" -out "$work/ca.pem" &&
            openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
                -keyout "$work/broker.key" -out "$work/broker.csr" &&
            printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
                "extendedKeyUsage=serverAuth" "basicConstraints=CA:FALSE" >"$work/broker.ext" &&
            openssl x509 -req -days 825 -in "$work/broker.csr" -CA "$work/ca.pem" \
                -CAkey "$work/ca.key" -CAcreateserial -extfile "$work/broker.ext" \
                -out "$work/broker.crt" &&
            cat "$work/broker.key" "$work/broker.crt" "$work/ca.pem" >"$work/keystore.pem"
    ) >>"$log" 2>&1; then
        rm -rf "$work"
        die "could not make the local CA and the brokers' certificate (see $log)"
    fi
    mv "$work/ca.key" "$KAFKA_CA_KEY"
    mv "$work/keystore.pem" "$KAFKA_KEYSTORE"
    chmod 644 "$work/ca.pem"
    mv "$work/ca.pem" "$KAFKA_CA"
    rm -rf "$work"
}
