"""Shared fixtures: one tiny checkpoint per test session, written by the project's own writer,
and one engine loaded from it through the real loading path."""

from __future__ import annotations

import os
import signal

# Started in the background by a non-interactive shell (as CI may), pytest inherits SIGINT ignored,
# and so would every CLI the tests start and interrupt with Ctrl-C (Python keeps an ignored SIGINT)
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if os.environ.get("PYTEST_XDIST_WORKER"):  # before torch loads: the servers tests start inherit it
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from engine.engine import Engine
from engine.loading import LoadOptions
from tooling.tiny_checkpoint import write_tiny_checkpoint

transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()
# Two test processes share the two cores (pyproject's `-n 2`): torch takes one thread in each, as
# do the servers and benchmarks they start (fast tier: 100 s this way, 109 with theirs at two)
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


# The files whose tests share tests/engine/conftest.py's `slot_engines` (its compiled engine takes
# ~50 s to build on 2 cores): one process runs them all under `-n 2`, so it is built once
SHARED_ENGINE_FILES = {
    f"tests/engine/{name}.py" for name in ("test_slot_decoder", "test_fast_decode", "test_self_check", "test_batching")
}


def pytest_xdist_make_scheduler(config, log):
    """pyproject's `--dist loadfile` (a file's tests in one process), with SHARED_ENGINE_FILES as one file."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FilesSharingAnEngine(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = super()._split_scope(nodeid)
            return "slot_engines" if file in SHARED_ENGINE_FILES else file

    return FilesSharingAnEngine(config, log)


def pytest_collection_modifyitems(config, items):
    """Under `-n 2` the slow files start first, so the run does not end on one of them alone
    (each worker sorts the same list the same way, as pytest-xdist requires)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        slow_files = {item.path for item in items if item.get_closest_marker("slow")}
        items.sort(key=lambda item: item.path not in slow_files)  # stable: a file's order is kept


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", seed=0)


@pytest.fixture(scope="session")
def engine(tiny_checkpoint):
    return Engine.load(LoadOptions(model=str(tiny_checkpoint), device="cpu"))


@pytest.fixture(scope="session")
def compile_folder(tmp_path_factory):
    """One compile cache for the session (engine/compile_cache.py): a second engine compiled with
    the same key (model, rows, capacity) loads the first one's graphs instead of compiling again,
    about 20 s each on 2 cores. Nothing is written to the user's own cache."""
    return tmp_path_factory.mktemp("compile")


API_KEY = "test-key"  # the shared server's /v1 key


@pytest.fixture(scope="session")
def web_server_log(tmp_path_factory):
    """The shared server's console output, from its start on (tests read what it printed)."""
    return tmp_path_factory.mktemp("server") / "serve.log"


@pytest.fixture(scope="session")
def web_server(tiny_checkpoint, web_server_log):
    """One real server for the end-to-end tests, with a 40 MB upload cap to test refusals."""
    from tooling.server import running_server  # noqa: E402

    with running_server(tiny_checkpoint, web_server_log, max_upload_mb="40", api_key=API_KEY) as url:
        yield url
