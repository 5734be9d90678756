"""Passwords out of sight: URLs shown with ``***`` in place of their secrets.

A storage or tracking URL may carry a password (``postgresql://user:pw@host/db``,
``redis://:pw@host``, ``?password=pw``). Whatever the pipeline prints, tags or raises
shows :func:`mask_url` of it, and an error text from a driver goes through :func:`scrub`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

#: seconds to wait for a storage server to accept a connection: a typo'd host or a server
#: that is down fails in seconds instead of the OS's TCP timeout (minutes); 5 s still
#: covers a slow VPN handshake (libpq's own minimum is 2 s)
CONNECT_TIMEOUT_S = 5

#: SQLAlchemy dialects whose drivers (psycopg, psycopg2, pymysql, mysqlclient) all take
#: libpq's / MySQL's ``connect_timeout`` connect argument
_TIMEOUT_DIALECTS = ("postgresql", "mysql", "mariadb")

#: ``scheme://user:password@`` with the password as SQLAlchemy reads it (``[^@]*``: up to
#: the first ``@``, so an unencoded ``/`` in a password is still hidden); any number of
#: slashes, so a mistyped ``postgresql:/user:password@host`` is masked too
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][\w+.-]*:/*[^:/@]*:)(?P<secret>[^@]*)(?=@)")

#: query parameters that carry a secret (libpq's ``password``, redis-py's ``password``, …)
_SECRET_QUERY = re.compile(
    r"(?P<head>[?&](?:password|passwd|pwd|token|secret|api_key|access_key|secret_key)=)"
    r"(?P<secret>[^&#]*)",
    re.IGNORECASE,
)

MASK = "***"


def secrets_in(url: str) -> list[str]:
    """The secrets in ``url`` as written and percent-decoded (longest first)."""
    found = [m.group("secret") for m in _USERINFO.finditer(url)]
    found += [m.group("secret") for m in _SECRET_QUERY.finditer(url)]
    values = {s for s in found if s} | {unquote(s) for s in found if s}
    return sorted(values, key=len, reverse=True)


def mask_url(url: str) -> str:
    """``url`` with its password and secret query values shown as ``***``:
    ``postgresql://postgres:***@127.0.0.1/test``. A URL without secrets is unchanged."""
    url = _USERINFO.sub(lambda m: m.group("head") + MASK, url)
    return _SECRET_QUERY.sub(lambda m: m.group("head") + MASK, url)


def scrub(text: str, *urls: str | None) -> str:
    """``text`` (an error message from a driver, say) with every secret of ``urls`` masked."""
    for url in urls:
        if not url:
            continue
        for secret in secrets_in(url):
            text = text.replace(secret, MASK)
    return text


def sql_engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine arguments for ``url``: a connect timeout for database servers
    (:data:`CONNECT_TIMEOUT_S`), unless the URL sets its own ``connect_timeout``."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() in _TIMEOUT_DIALECTS and "connect_timeout" not in parsed.query:
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {}
