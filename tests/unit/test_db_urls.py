"""Database URLs for each driver, one host or several (worker/core/db.py; no database)."""

import pytest
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import make_url

from worker.core.db import DatabaseUrlError, asyncpg_dsn, parse_hosts, redact, sqlalchemy_url

# The same primary and replica in each spelling a user may write.
SPELLINGS = [
    "postgresql://app:s3cret@db1:5433,db2:5434/prod?target_session_attrs=read-write",
    "postgresql://app:s3cret@/prod?host=db1,db2&port=5433,5434&target_session_attrs=read-write",
    "postgresql+asyncpg://app:s3cret@/prod?host=db1:5433&host=db2:5434"
    "&target_session_attrs=read-write",
    "postgres://app:s3cret@/prod?target_session_attrs=read-write&host=db1:5433,db2:5434",
]


def asyncpg_arguments(dsn: str) -> tuple[list[tuple[str, int]], dict[str, object]]:
    """What asyncpg.connect makes of `dsn`: its addresses and its other parameters."""
    from asyncpg.connect_utils import _parse_connect_dsn_and_args

    addrs, params = _parse_connect_dsn_and_args(
        dsn=dsn,
        host=None,
        port=None,
        user=None,
        password=None,
        passfile=None,
        database=None,
        ssl=None,
        direct_tls=False,
        server_settings=None,
        target_session_attrs=None,
        krbsrvname=None,
        gsslib=None,
        service=None,
        servicefile=None,
    )
    return addrs, {
        "user": params.user,
        "password": params.password,
        "database": params.database,
        "target_session_attrs": str(params.target_session_attrs.value),
    }


def sqlalchemy_arguments(url: str) -> dict[str, object]:
    """What SQLAlchemy's asyncpg dialect hands asyncpg.connect for `url`."""
    _args, kwargs = PGDialect_asyncpg().create_connect_args(make_url(url))
    return kwargs


@pytest.mark.parametrize("url", SPELLINGS)
def test_every_spelling_of_several_hosts_reaches_both_drivers_alike(url: str) -> None:
    addrs, params = asyncpg_arguments(asyncpg_dsn(url))
    assert addrs == [("db1", 5433), ("db2", 5434)]
    assert params == {
        "user": "app",
        "password": "s3cret",
        "database": "prod",
        "target_session_attrs": "read-write",
    }
    assert sqlalchemy_arguments(sqlalchemy_url(url)) == {
        "user": "app",
        "password": "s3cret",
        "database": "prod",
        "host": ["db1", "db2"],
        "port": [5433, 5434],
        "target_session_attrs": "read-write",
    }


def test_a_host_without_a_port_is_on_5432_and_one_port_serves_every_host() -> None:
    assert parse_hosts("postgresql://u@db1,db2:6000/x").hosts == [("db1", 5432), ("db2", 6000)]
    assert parse_hosts("postgresql://u@/x?host=db1,db2&port=6000").hosts == [
        ("db1", 6000),
        ("db2", 6000),
    ]


def test_unix_sockets_and_ipv6_addresses_in_a_list_of_hosts() -> None:
    url = "postgresql://u@/x?host=/run/pg1,/run/pg2&port=5432,5433"
    assert asyncpg_arguments(asyncpg_dsn(url))[0] == [
        "/run/pg1/.s.PGSQL.5432",
        "/run/pg2/.s.PGSQL.5433",
    ]
    assert sqlalchemy_arguments(sqlalchemy_url(url))["host"] == ["/run/pg1", "/run/pg2"]

    ipv6 = "postgresql://u@[::1]:5432,[fe80::2]:5433/x"
    assert asyncpg_arguments(asyncpg_dsn(ipv6))[0] == [("::1", 5432), ("fe80::2", 5433)]
    with pytest.raises(DatabaseUrlError, match="IPv6 address ::1 in a list of several hosts"):
        sqlalchemy_url(ipv6)


def test_a_single_host_url_is_passed_on_as_written() -> None:
    for url in (
        "postgresql://u:p@db:5432/x?sslmode=require",
        "postgresql://postgres:@/postgres?host=/tmp/pgserver",  # the embedded server's
        "postgresql://u@/x?host=db&port=6000",
    ):
        assert asyncpg_dsn(url) == url
        assert sqlalchemy_url(url) == url.replace("postgresql://", "postgresql+asyncpg://")


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("postgresql://u@db1,db2/x?host=db3", "names hosts twice"),
        ("postgresql://u@/x?host=db1:5432,db2&port=5433", "gives ports twice"),
        ("postgresql://u@/x?host=db1,db2,db3&port=1,2", "lists 3 hosts and 2 ports"),
        ("postgresql://u@db1:5432,db2:x/x", "port 'x' in the database URL is not a port"),
        ("postgresql://u@db1,db2:70000/x", "port '70000'"),
        ("postgresql://u@[::1,db2/x", "invalid IPv6 address"),
    ],
)
def test_a_list_of_hosts_that_cannot_be_read_is_a_clear_error(url: str, error: str) -> None:
    with pytest.raises(DatabaseUrlError, match=error):
        asyncpg_dsn(url)
    with pytest.raises(DatabaseUrlError, match=error):
        sqlalchemy_url(url)


def test_the_password_of_a_multi_host_url_is_redacted() -> None:
    for url in SPELLINGS[:2]:
        assert "s3cret" not in redact(url)
        assert "app:***@" in redact(url)
