"""Schemathesis, as its users run it (the `schemathesis` command), against the shared real server's
/openapi.json: request bodies generated from the documented schemas of every route, no answer
may be a 5xx or break its documented response schema. Bounded: three examples per operation,
the fuzzing phase only, a time budget (the run may overshoot it by one request's time)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import API_KEY

pytestmark = pytest.mark.slow  # a 40 s fuzzing budget, by design


def test_schemathesis_finds_no_5xx_and_no_schema_violation(web_server, tmp_path):
    command = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    run = subprocess.run(
        [
            command,
            "run",
            web_server + "/openapi.json",
            "--header",
            f"Authorization: Bearer {API_KEY}",
            "--max-examples=3",
            "--max-time=40",
            "--seed=1",
            "--phases=examples,fuzzing",
            "--checks=not_a_server_error,response_schema_conformance",
            "--request-timeout=60",
            "--no-shrink",
            "--workers=1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    tested = re.search(r"Tested:\s+(\d+)", run.stdout)
    assert tested and int(tested.group(1)) >= 10  # chat, responses, audio, models, tokenize, health, metrics
