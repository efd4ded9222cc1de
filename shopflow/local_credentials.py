"""The local servers' credentials: SHOPFLOW_INFRA_DIR/credentials.json, written by
`scripts/infra.sh up` at the servers' first start (mode 0600, never committed):

    {"kafka": {principal: password, ...}, "postgres": {role: password, ...},
     "redis": {user: password, ...}}

Read only for what the settings do not say: a deployment configures its credentials
(SHOPFLOW_KAFKA_USERNAME/PASSWORD, passwords in the URLs) and never has this file."""

import fcntl
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

CREDENTIALS_FILE = "credentials.json"
TOKEN_SIGNING_KEY_FILE = "token-signing-key.pem"
TOKEN_PUBLIC_KEY_FILE = "token-signing-key.pub.pem"
KAFKA_CA_FILE = "kafka-ca.pem"

# "sentinel": the Redis Sentinels' own users (scripts/infra/redis-sentinel.sh).
Section = Literal["kafka", "postgres", "redis", "patroni", "etcd", "sentinel"]


class MissingCredentials(Exception):
    """A credential that neither the settings nor the local credentials file give."""


@dataclass(frozen=True)
class LocalCredentials:
    path: Path
    sections: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, infra_dir: Path) -> "LocalCredentials":
        """The file under `infra_dir`; empty when there is none."""
        path = infra_dir / CREDENTIALS_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as error:
            raise MissingCredentials(f"cannot read {path}: {error}") from error
        sections = {
            name: {str(k): str(v) for k, v in entries.items()}
            for name, entries in raw.items()
            if isinstance(entries, dict)
        }
        return cls(path, sections)

    def get(self, section: Section, name: str) -> str | None:
        return self.sections.get(section, {}).get(name)

    def require(self, section: Section, name: str, *, configure: str) -> str:
        password = self.get(section, name)
        if password is None:
            where = (
                f"{self.path} has no {section} entry for it"
                if self.sections
                else f"there is no {self.path}"
            )
            raise MissingCredentials(
                f"no password for the {section} user {name!r}: set {configure}, or start "
                f"the local servers (`scripts/infra.sh up`); {where}"
            )
        return password


def with_password(url: str, credentials: LocalCredentials, section: Section) -> str:
    """`url` with its user's password from the local credentials when it names a user
    and no password (a URL with a password, or with no user, is left as it is)."""
    parsed = make_url(url)
    if parsed.password is not None or not parsed.username:
        return url
    password = credentials.get(section, parsed.username)
    if password is None:
        return url
    return parsed.set(password=password).render_as_string(hide_password=False)


def without_password(value: str) -> str:
    """`value` with the password of the URL it is masked (`***`); anything else as is.
    SQLAlchemy's URL parser renders any scheme://user:password@host form (the database
    URLs, Redis's); a URL it cannot read is hidden whole when it could hold a password."""
    if "://" not in value or "@" not in value:
        return value
    try:
        return make_url(value).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "***"


def ensure_local_passwords(infra_dir: Path, section: Section, names: list[str]) -> LocalCredentials:
    """The local credentials, with a new random password for each of `names` that has
    none in `section` (written back atomically, mode 0600, under a lock, since
    scripts/infra.sh writes the same file)."""
    path = infra_dir / CREDENTIALS_FILE
    with open(infra_dir / ".lock", "a") as lock:  # scripts/infra.sh's lock too
        fcntl.flock(lock, fcntl.LOCK_EX)
        credentials = LocalCredentials.load(infra_dir)
        missing = [name for name in names if credentials.get(section, name) is None]
        if not missing:
            return credentials
        sections = {k: dict(v) for k, v in credentials.sections.items()}
        entries = sections.setdefault(section, {})
        for name in missing:
            entries[name] = secrets.token_hex(16)
        temporary = path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(sections, file, indent=2, sort_keys=True)
            file.write("\n")
        os.replace(temporary, path)
        return LocalCredentials(path, sections)
