"""Keep credentials out of everything squad logs, records, prints or commits.

An endpoint may echo the bearer token in an error, and `OPENAI_BASE_URL` may carry a
password; both would otherwise reach `events.jsonl` and `cassette.jsonl`, which are
committed. `register` is told the secrets of this process (the API key, the URL's user
info); `redact` removes them, and anything shaped like a credential (URL user info, a
bearer token, an OpenAI-style key) whether it was registered or not, so old cassettes
replay without showing a key either.

Also here: which repository files count as secret-like (agents never read them).
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from collections.abc import Iterable
from fnmatch import fnmatchcase

REDACTED = "[redacted]"
_known: set[str] = set()
_lock = threading.Lock()
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,20}://)[^/\s@'\"<>]+@")
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}")
_KEY_SHAPED = re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_-]{12,}")
_SECRET_QUERY = re.compile(r"(?i)([?&](?:api[_-]?key|key|token|access_token|secret|password|"
                           r"sig|signature)=)[^&\s#'\"]+")


def register(*values: str | None) -> None:
    """Remember secrets of this process (values shorter than 4 characters are not)."""
    with _lock:
        _known.update(v for v in values if v and len(v.strip()) >= 4)


def register_url(url: str | None) -> None:
    """Remember the user name, password and secret query values of an endpoint URL."""
    if not url:
        return
    parts = urllib.parse.urlsplit(url)
    register(parts.password, parts.username if parts.password or parts.username else None)
    for name, value in urllib.parse.parse_qsl(parts.query):
        if _SECRET_QUERY.search(f"?{name}=x"):
            register(value)


def redact(text: str) -> str:
    """`text` without any registered secret or credential-shaped string."""
    if not text:
        return text
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    # Each pattern runs only where the literal text it needs is present: every line of a
    # run's log passes here, and a scan per pattern was most of a line's cost. The tests
    # are exact, so nothing a pattern would match is skipped (a case-blind pattern is
    # pre-tested on ASCII text only: in other text `re` also folds letters like U+017F).
    if "://" in text and "@" in text:
        text = _URL_USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", text)
    lowered = text.lower() if text.isascii() else None
    if lowered is None or "bearer" in lowered or "basic" in lowered:
        text = _BEARER.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    if "k-" in text:
        text = _KEY_SHAPED.sub(lambda m: m.group(1) + "-" + REDACTED, text)
    if "=" in text and ("?" in text or "&" in text):
        text = _SECRET_QUERY.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def shown_url(url: str) -> str:
    """An endpoint URL as it may be printed: no user info, no secret query values."""
    return redact(url)


# ---- secret-like files ---------------------------------------------------------------------

# Matched case-insensitively against every component of a path.
SECRET_NAMES = (
    ".env", ".env.*", "*.env", ".envrc", "*.envrc", ".git", ".git-credentials",
    "*.pem", "*.key", "*.crt.key", "*.p12", "*.pfx", "*.p8", "*.jks", "*.keystore",
    "*.kdbx", "*.kdb", "*.keychain", "*.keychain-db", "*.ppk", "*.gpg", "*.pgp", "*.age",
    "*.ovpn", "*.tfstate", "*.tfstate.*", "*.tfvars", "*.tfvars.json",
    "id_rsa*", "id_ed25519*", "id_ecdsa*", "id_dsa*",
    ".npmrc", ".pypirc", ".netrc", "_netrc", ".pgpass", ".htpasswd", ".dockercfg",
    ".boto", ".s3cfg", ".vault-token",
    "credentials*", "*credentials*", "*service-account*", "*service_account*",
    "*serviceaccount*", "*secret*", "*.token", "token.json", "*private*key*",
)


def secret_rule(path: str, extra: Iterable[str] = (), allow: Iterable[str] = ()) -> str | None:
    """The secret-like pattern a component of `path` matches, or None.

    `extra` adds patterns (from squad.toml `[secrets] names`); `allow` exempts whole paths
    (`[secrets] allow`, globs on the repository-relative path, e.g. 'docs/example.env').
    """
    lowered = path.lower()
    if any(fnmatchcase(lowered, glob.lower()) for glob in allow):
        return None
    rules = (*SECRET_NAMES, *(rule.lower() for rule in extra))
    return next((rule for part in lowered.split("/") for rule in rules
                 if fnmatchcase(part, rule)), None)
