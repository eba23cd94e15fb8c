"""The hostile client (tooling/hostile_client.py) against the real server: every event read from
/config, on every route, with every FileData shape (nested ones included), the file routes,
foreign Host names and other sites' pages, and control tokens split across text parts. Nothing may
get through, and every kind of attack must have been tried. Against main at 5b1f0bf the same
client got through in 7 of its 10 rows (the closing note of issue 25 has the table)."""

from __future__ import annotations

import pytest

from tests.conftest import API_KEY
from tooling.hostile_client import HostileClient, secret_targets, table

pytestmark = pytest.mark.slow  # thousands of attacks


def test_a_hostile_client_gets_nothing_through(web_server, tmp_path):
    rows = HostileClient(web_server, API_KEY, secret_targets(tmp_path)).run()
    print(table(rows))
    assert all(row.attempts for row in rows), table(rows)
    assert sum(row.attempts for row in rows) > 2000  # every event x route x shape, not a sample
    assert {row.fault: row.breaches[:3] for row in rows if row.breaches} == {}
