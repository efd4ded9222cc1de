#!/usr/bin/env bash
# docker-compose.kafka.yml's PostgreSQL, at its first start (docker-entrypoint-initdb.d):
# the roles scripts/infra.sh makes, with the passwords of .infra/credentials.json (through
# .infra/docker.env): the schema's owner, the service (rows only, granted by the
# migrations) and the read-only role of the HTTP queries; the database `shopflow`.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username postgres --dbname postgres \
    -v owner="$SHOPFLOW_OWNER_PASSWORD" -v service="$SHOPFLOW_SERVICE_PASSWORD" \
    -v reader="$SHOPFLOW_READER_PASSWORD" <<'SQL'
CREATE ROLE shopflow_owner LOGIN CREATEDB PASSWORD :'owner';
CREATE ROLE shopflow LOGIN PASSWORD :'service';
CREATE ROLE shopflow_reader LOGIN PASSWORD :'reader';
CREATE DATABASE shopflow OWNER shopflow_owner;
SQL
