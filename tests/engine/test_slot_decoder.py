"""The slot cache's one compiled step per batch bucket serves every adapter mix: each row of a
mixed batch, at every bucket (1, 2, 4, 8, 16), gives the greedy tokens it gives alone on the
dynamic path (fp32, CPU, tiny checkpoint), rows leave and join between steps, and no mix or
make-up of the batch compiles a new graph."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from engine.compile_cache import MEGA_CACHE, cache_key
from engine.request import GenerationRequest, SamplingParams
from engine.slot_decoder import BUCKETS
from media.parts import Message
from tooling.inputs import MODALITIES

STEPS = 5
ORDER = ["text", "image", "audio", "image+audio"]  # base, vision, speech, vision: a mix in every bucket


def request(modality: str) -> GenerationRequest:
    return GenerationRequest([Message("user", MODALITIES[modality]())], SamplingParams(max_new_tokens=STEPS))


@pytest.fixture
def slots(fast_engine):
    """The session's engine on the slot cache (tests/engine/conftest.py): 16 rows, every bucket;
    static in the everyday tier, compiled too in the whole suite."""
    assert fast_engine.static.buckets == list(BUCKETS) and fast_engine.static.uncompiled == []
    return fast_engine


@pytest.fixture(scope="module")
def alone(engine):
    """Each modality's greedy tokens decoded alone on the dynamic path (the reference)."""
    assert engine.static is None
    return {modality: engine.generate(request(modality))[1] for modality in ORDER}


class Together:
    """Requests decoded in one batch on the slot decoder, greedy through each request's own sampler."""

    def __init__(self, engine):
        self.engine, self.decoder = engine, engine.static
        self.rows: dict[int, tuple] = {}  # slot -> (request, prepared, sampler, ids)
        self.logits: dict[int, torch.Tensor] = {}
        self.tokens: dict[int, list[int]] = {}

    def admit(self, slot: int, modality: str) -> None:
        req = request(modality)
        prepared = self.engine.prepare(req)
        with self.engine.runner.turn(None):
            self.logits[slot] = self.decoder.admit(slot, prepared)
        self.rows[slot] = (prepared, self.engine.sampler(req, prepared), prepared.input_ids)
        self.tokens[slot] = []

    def step(self) -> None:
        slots = list(self.rows)
        chosen = []
        for slot in slots:
            prepared, sampler, ids = self.rows[slot]
            token = sampler.choose(ids, self.logits[slot])
            self.rows[slot] = (prepared, sampler, torch.cat([ids, token[:, None]], dim=1))
            self.tokens[slot].append(int(token[0]))
            chosen.append(token)
        with self.engine.runner.turn(None):
            logits = self.decoder.step(torch.cat(chosen), slots)
        self.logits.update({slot: logits[i : i + 1] for i, slot in enumerate(slots)})

    def release(self, slot: int) -> list[int]:
        with self.engine.runner.turn(None):
            self.decoder.release(slot)
        del self.rows[slot]
        return self.tokens.pop(slot)


def agrees(tokens: list[int], reference: list[int]) -> bool:
    """The same tokens, up to where the reference ended (an end token stops `generate`)."""
    return tokens[: len(reference)] == reference


def test_mixed_adapter_batches_equal_each_row_alone_at_every_bucket(slots, alone):
    graphs = counters["stats"]["unique_graphs"]
    for bucket in BUCKETS:
        batch = Together(slots)
        for slot in range(bucket):
            batch.admit(slot, ORDER[slot % len(ORDER)])
        for _ in range(STEPS):
            batch.step()
        for slot in range(bucket):
            modality = ORDER[slot % len(ORDER)]
            assert agrees(batch.release(slot), alone[modality]), (bucket, slot, modality)
    assert counters["stats"]["unique_graphs"] == graphs  # every bucket and mix ran the graphs compiled at start


def test_rows_leave_and_join_between_steps(slots, alone):
    """A row leaving from the middle (the last row moves into its place), a new one joining, the
    batch crossing buckets both ways: each row still decodes exactly as it would alone."""
    graphs = counters["stats"]["unique_graphs"]
    batch = Together(slots)
    for slot, modality in enumerate(["audio", "text", "image", "image+audio", "text"]):  # bucket 8
        batch.admit(slot, modality)
    batch.step()
    batch.step()
    assert agrees(batch.release(1) + [], alone["text"][:2])
    batch.admit(9, "image")  # joins late: two steps behind the others
    finished = {}
    for _ in range(STEPS - 2):
        batch.step()
    for slot in (0, 2, 3, 4):
        finished[slot] = batch.release(slot)
    for _ in range(2):
        batch.step()  # slot 9 alone now: bucket 1
    finished[9] = batch.release(9)
    expected = {0: "audio", 2: "image", 3: "image+audio", 4: "text", 9: "image"}
    for slot, modality in expected.items():
        assert agrees(finished[slot], alone[modality]), (slot, modality)
    assert counters["stats"]["unique_graphs"] == graphs


def test_a_step_for_some_rows_leaves_the_others_as_they_were(slots, alone):
    """Stepping a subset of the slots (a scheduler that holds a row back) advances only those."""
    batch = Together(slots)
    batch.admit("a", "text")
    batch.admit("b", "audio")
    held = batch.rows.pop("b")  # b sits out two steps
    batch.step()
    batch.step()
    batch.rows["b"] = held
    for _ in range(STEPS - 2):
        batch.step()
    a, b = batch.release("a"), batch.release("b")
    assert agrees(a, alone["text"]) and agrees(b, alone["audio"][: STEPS - 2])


def test_a_full_decoder_and_a_taken_slot_are_refused(slots):
    batch = Together(slots)
    batch.admit(0, "text")
    with pytest.raises(RuntimeError, match="taken"):
        batch.admit(0, "text")
    batch.release(0)


@pytest.mark.slow  # the compiled engine's cold compile
def test_compiled_graphs_are_kept_on_disk_under_their_key(slot_engines, compile_folder):
    """What a second start loads (bench/startup.py measures that start): one folder per key, and a
    different cache shape, dtype or device is a different key."""
    engine = slot_engines("compiled")
    key = cache_key(engine.model, engine.device, dtype=engine.dtype, rows=16, capacity=engine.static.capacity)
    assert (compile_folder / key / MEGA_CACHE).stat().st_size > 0
    assert key != cache_key(engine.model, engine.device, dtype=engine.dtype, rows=8, capacity=engine.static.capacity)
