"""The conformance module: each file drives one client library, unchanged, against the shared real
server (tests/conftest.py's `web_server`, one per session). The tiny model's answers are random:
the schemas here are bounded (enums, small ranges, few items, no free strings), and the tests
assert what the server guarantees (a forced call or a format parses into the library's model),
never content. Each library's own retries are off, so a failure shows the first answer."""

from __future__ import annotations

import os
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from tests.conftest import API_KEY

# litellm reads its price list from the network unless told; openai-agents would send traces
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

MODEL = "phi4mm"
TOKENS = 200  # room for a bounded call or object in the tiny model's tokens


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: Literal["Paris", "Oslo"]
    floor: int = Field(ge=0, le=9)


class Parcel(BaseModel):
    """A parcel to ship: nested, so its schema has `$defs` and `$ref`."""

    model_config = ConfigDict(extra="forbid")
    to: Address
    fragile: bool
    tags: list[Literal["a", "b"]] = Field(max_length=2)


@pytest.fixture
def base_url(web_server) -> str:
    return web_server + "/v1"


@pytest.fixture
def api_key() -> str:
    return API_KEY
