"""Adding an adapter is one row of the table (engine/model_family.py), and the API names only the
adapters a checkpoint brought.

A third adapter, selected by no input (only by naming it as `model`), is added to the table and to
nothing else: the tiny checkpoint's writer then writes its folder, and a real `phi4mm serve` whose
table has the same row (a `sitecustomize` adds it as the process starts) loads it, lists it and
answers with it. The checkpoint has no `speech-lora/`: speech is neither listed nor nameable."""

from __future__ import annotations

import os
import shutil

import httpx
import pytest

from app.api import ADAPTER_HEADER
from engine import model_family
from engine.model_family import AdapterSpec
from tooling.server import running_server
from tooling.tiny_checkpoint import write_tiny_checkpoint

pytestmark = pytest.mark.slow  # a checkpoint and a server of its own

THIRD = AdapterSpec("third", "third-lora")  # selected by no input kind: only by naming it

SITECUSTOMIZE = f"""from engine import model_family
from engine.model_family import AdapterSpec

model_family.ADAPTERS = (*model_family.ADAPTERS, {THIRD!r})
"""


@pytest.fixture(scope="module")
def third_checkpoint(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model_family, "ADAPTERS", (*model_family.ADAPTERS, THIRD))
        checkpoint = write_tiny_checkpoint(tmp_path_factory.mktemp("third") / "ckpt")
    assert (checkpoint / "third-lora" / "adapter_config.json").is_file()  # the writer read the table
    shutil.rmtree(checkpoint / "speech-lora")
    return checkpoint


@pytest.fixture(scope="module")
def third_server(third_checkpoint, tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
        with running_server(third_checkpoint, site / "serve.log") as url:
            yield url


def ask(url: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8, "temperature": 0}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=120)


def test_the_third_adapter_is_listed_and_answers_by_name(third_server):
    listed = [m["id"] for m in httpx.get(third_server + "/v1/models").json()["data"]]
    assert listed[1:] == ["vision", "third"]
    assert httpx.get(third_server + "/v1/models/third").status_code == 200
    third, base = ask(third_server, "third"), ask(third_server, listed[0])
    assert third.status_code == 200, third.text
    assert third.headers[ADAPTER_HEADER] == "third" and base.headers[ADAPTER_HEADER] == "base"
    # the adapter's weights were applied (greedy, deterministic: the random LoRA moves the answer)
    assert third.json()["choices"][0]["message"] != base.json()["choices"][0]["message"]


def test_an_adapter_the_checkpoint_lacks_is_not_served(third_server):
    assert httpx.get(third_server + "/v1/models/speech").status_code == 404
    refused = ask(third_server, "speech")
    assert refused.status_code == 404 and "vision and third" in refused.json()["error"]["message"]
