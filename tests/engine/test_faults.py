"""Fault injection on the real tiny model: its forward pass raises (an exception, or PyTorch's
out-of-memory error) on a chosen request, adapter or call. The failing request gets one clear
error; every other request finishes token-identical to its lone answer; the engine keeps serving
with no thread or row left behind."""

from __future__ import annotations

import threading

import pytest
import torch

from core.errors import GenerationFailed, ShuttingDown
from engine.engine import Engine
from engine.loading import LoadOptions
from engine.request import GenerationRequest, SamplingParams
from media.parts import Message, TextPart
from tests.engine.conftest import request
from tests.engine.test_batching import wait_until

POISON = "zebra quartz"  # the marked request's prompt carries these words


@pytest.fixture
def faulty(tiny_checkpoint):
    """A batching engine whose model raises whenever `fault["when"](kwargs, router)` is true."""
    engine = Engine.load(LoadOptions(model=str(tiny_checkpoint), device="cpu"))
    engine.enable_batching(8)
    fault = {"when": lambda kwargs, router: False, "error": RuntimeError("injected fault"), "raised": 0}
    marker = engine.tokenizer(POISON, add_special_tokens=False)["input_ids"]

    def hook(module, args, kwargs):
        if fault["when"](kwargs, engine.router):
            fault["raised"] += 1
            raise fault["error"]

    engine.model.register_forward_pre_hook(hook, with_kwargs=True)
    threads = threading.active_count()
    yield engine, fault, marker
    engine.scheduler.close()
    assert threading.active_count() <= threads  # the decode loop ended: no thread left behind


def carries(kwargs, marker) -> bool:
    ids = kwargs.get("input_ids")
    if ids is None or ids.shape[1] < len(marker):
        return False
    return any(ids[0, i : i + len(marker)].tolist() == marker for i in range(ids.shape[1] - len(marker) + 1))


def poisoned(tokens: int = 16) -> GenerationRequest:
    return GenerationRequest(
        [Message("user", [TextPart(f"Say {POISON} twice.")])], SamplingParams(max_new_tokens=tokens)
    )


def run_with_errors(engine, jobs: dict) -> tuple[dict, dict]:
    """Like run_together, but a request that raises records its error instead of ending the test."""
    results, errors, submitted = {}, {}, []
    submit = engine.scheduler.submit
    engine.scheduler.submit = lambda req, *rest: submitted.append(req) or submit(req, *rest)

    def run(name, req):
        results[name] = []
        try:
            for chunk in engine.stream(req):
                results[name] += chunk.token_ids
        except Exception as err:  # noqa: BLE001
            errors[name] = err

    threads = [threading.Thread(target=run, args=item) for item in jobs.items()]
    with engine.runner.slot:  # nothing steps until every request is submitted
        for thread in threads:
            thread.start()
        assert wait_until(lambda: len(submitted) == len(jobs), 60)
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a request never ended"
    return results, errors


def others() -> dict:
    """Three healthy requests, one per adapter."""
    return {m: request(m) for m in ("text", "image", "audio")}


@pytest.mark.parametrize(
    "error, message",
    [(RuntimeError("injected"), "failed on the server"), (torch.OutOfMemoryError("injected"), "ran out of memory")],
)
def test_a_failing_prefill_fails_only_its_request(faulty, solo, error, message):
    engine, fault, marker = faulty
    fault["error"] = error
    fault["when"] = lambda kwargs, router: carries(kwargs, marker)
    results, errors = run_with_errors(engine, {**others(), "bad": poisoned()})
    assert fault["raised"] >= 1
    assert set(errors) == {"bad"} and isinstance(errors["bad"], GenerationFailed)
    assert message in str(errors["bad"]) and "injected" not in str(errors["bad"])  # for people, not Python
    assert all(results[m] == solo[m] for m in ("text", "image", "audio"))
    assert engine.finished["error"] == 1
    assert wait_until(lambda: engine.scheduler.idle)
    assert engine.generate(request("text", tokens=4))[2].finish_reason == "length"  # still serving


def test_a_failing_batched_step_fails_only_the_row_that_fails_alone(faulty, solo):
    """Every forward pass that applies the speech adapter fails after the prefills: the batched step
    fails, each row retries alone, and only the speech request ends with the error."""
    engine, fault, _ = faulty
    fault["when"] = lambda kwargs, router: (
        kwargs.get("input_ids") is not None
        and kwargs["input_ids"].shape[1] == 1
        and ("speech" in (router.row_adapters or []) or router.active == "speech")
    )
    results, errors = run_with_errors(
        engine, {"text": request("text"), "image": request("image"), "audio": request("audio")}
    )
    assert set(errors) == {"audio"} and isinstance(errors["audio"], GenerationFailed)
    assert results["text"] == solo["text"] and results["image"] == solo["image"]
    assert 1 <= len(results["audio"]) < len(solo["audio"])  # it got its first token, then failed
    assert wait_until(lambda: not engine.scheduler.rows)


def test_an_out_of_memory_on_one_call_is_survived_by_everyone(faulty, solo):
    """One batched step runs out of memory (nobody's fault): every row retries alone and succeeds."""
    engine, fault, _ = faulty
    calls = {"n": 0}

    def third_batched_step(kwargs, router):
        if kwargs["input_ids"].shape[0] > 1:
            calls["n"] += 1
            return calls["n"] == 3
        return False

    fault["error"], fault["when"] = torch.OutOfMemoryError("injected"), third_batched_step
    results, errors = run_with_errors(engine, others())
    assert fault["raised"] == 1 and errors == {}
    assert all(results[m] == solo[m] for m in results)


def test_an_out_of_memory_in_a_slot_cache_step_is_survived_by_everyone(faulty, solo):
    """The same on the static slot cache: the failed step advanced no row, each retries alone."""
    engine, fault, _ = faulty
    assert engine.set_decode("static") == "static"
    calls = {"n": 0}

    def third_slot_step(kwargs, router):
        if kwargs["input_ids"].shape[0] > 1:  # only slot steps of a bucket of 2 or more
            calls["n"] += 1
            return calls["n"] == 3
        return False

    fault["error"], fault["when"] = torch.OutOfMemoryError("injected"), third_slot_step
    results, errors = run_with_errors(engine, others())
    assert fault["raised"] == 1 and errors == {}
    assert all(results[m] == solo[m] for m in results)
    assert engine.scheduler._slots is not None and engine.static.free == engine.static.rows  # all on it, all freed


def test_submit_after_close_is_refused_at_once(faulty):
    engine, _, _ = faulty
    engine.scheduler.close()
    req = request("text", tokens=4)
    with pytest.raises(ShuttingDown, match="shutting down"):
        engine.scheduler.submit(req, engine.prepare(req))


def test_close_ends_open_generations_with_a_clear_error(faulty):
    engine, _, _ = faulty
    stream = engine.stream(request("text", tokens=2000))
    next(stream)
    engine.close()
    with pytest.raises(ShuttingDown, match="shutting down"):
        for _ in stream:
            pass
