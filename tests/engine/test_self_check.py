"""The fast path proves itself at start-up: a canary under every adapter, at every batch bucket,
on the static/compiled path and on the dynamic one. A fault that rounding cannot explain, or any
exception, falls back to the dynamic path with one warning and a reason that /health and `phi4mm doctor` report."""

from __future__ import annotations

import logging

import pytest
import torch

from engine.engine import Engine
from engine.loading import LoadOptions
from engine.slot_decoder import SlotDecoder
from tests.engine.conftest import request


@pytest.fixture
def fresh(tiny_checkpoint):
    return Engine.load(LoadOptions(model=str(tiny_checkpoint), device="cpu"))


def test_a_sound_fast_path_passes_and_serves(fast_engine, engine):
    """The session's engine on the static path (and in the whole suite, the compiled one), started
    fresh by tests/engine/conftest.py, where `set_decode` returned its mode: no second compile."""
    assert fast_engine.decode_mode in ("static", "compiled") and fast_engine.static is not None
    assert fast_engine.decode_fallback is None and fast_engine.self_check_s > 0
    assert fast_engine.generate(request("image", 8))[1] == engine.generate(request("image", 8))[1]


def test_a_cache_reporting_a_wrong_length_falls_back(fresh, engine, monkeypatch, caplog):
    """Off by one position, as the released sliding window made the old static cache (off by all)."""
    load = SlotDecoder.load

    def off_by_one(self, slot, layers):
        load(self, slot, layers)
        self.cache.lengths[self._slots.index(slot)] += 1

    monkeypatch.setattr(SlotDecoder, "load", off_by_one)
    with caplog.at_level(logging.WARNING, logger="engine.engine"):
        assert fresh.set_decode("static") == "dynamic"
    assert fresh.static is None and fresh.decode_mode == "dynamic"
    assert fresh.decode_fallback.startswith("static: batch 1, base adapter: step 1 logits differ")
    assert sum("failed its start-up self-check" in r.message for r in caplog.records) == 1
    assert fresh.generate(request("image", 8))[1] == engine.generate(request("image", 8))[1]  # serves, right


def test_a_compile_failure_falls_back_and_says_so(fresh, monkeypatch, tmp_path):
    def broken(fn, **kwargs):
        def compiled(*args):
            raise RuntimeError("injected compile failure")

        return compiled

    monkeypatch.setattr(torch, "compile", broken)
    assert fresh.set_decode("compiled", compile_cache=str(tmp_path)) == "dynamic"
    assert fresh.decode_fallback == "compiled: torch.compile failed for the decode step"


def test_an_exception_while_building_falls_back(fresh, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SlotDecoder, "admit", out_of_memory)
    assert fresh.set_decode("static") == "dynamic"
    assert fresh.decode_fallback == "static: OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
