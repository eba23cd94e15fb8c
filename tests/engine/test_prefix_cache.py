"""Prompt beginnings kept from one request (its system turn; its prompt whole but its last token)
start the next request's prefill when it begins with them (engine/prefix_cache.py): the answer
stays token-identical to `generate`, and only the same adapter, a prompt under the long-RoPE
switch, the same ids and the very same media share them."""

from __future__ import annotations

import os
import threading
import uuid

import pytest
import torch

from core.errors import GenerationFailed
from engine import prefix_cache
from engine.memory_budget import cgroup_headroom, free_bytes, kv_bytes_per_token
from engine.prefix_cache import room_for
from engine.request import GenerationRequest, SamplingParams
from media.parts import AudioPart, ImagePart, Message, TextPart
from tests.engine.conftest import reference_tokens
from tooling.inputs import EXPECTED_ADAPTER, MODALITIES, make_photo, make_tone


def system(words: str = "") -> Message:
    """A system turn no other test uses (the session's engine keeps what each test leaves)."""
    return Message("system", [TextPart(f"You are a careful assistant {uuid.uuid4().hex}. {words}")])


def asked(turn: Message, parts, tokens: int = 12) -> GenerationRequest:
    return GenerationRequest([turn, Message("user", parts)], SamplingParams(max_new_tokens=tokens))


@pytest.mark.parametrize("modality", list(MODALITIES))
def test_the_second_request_starts_after_the_kept_turn_and_still_equals_generate(engine, reference_model, modality):
    turn = system("Answer briefly. " * 10)
    _, first, before = engine.generate(asked(turn, MODALITIES[modality]()))
    request = asked(turn, MODALITIES[modality]())
    _, second, after = engine.generate(request)
    prepared = engine.prepare(request)
    # kept whole but its last token, media and all (a conversation's next turn begins with it)
    assert before.metrics.cached_tokens == 0
    assert after.metrics.cached_tokens == prepared.prompt_tokens - 1 > prepared.shared_prefix > 40
    assert second == first == reference_tokens(reference_model, engine, request, EXPECTED_ADAPTER[modality])


def test_a_kept_turn_serves_its_own_adapter_only(engine, reference_model):
    """A LoRA changes every layer's keys and values: the speech request after a text one with the
    same system turn computes its own (and equals `generate` under its adapter)."""
    turn = system()
    _, _, text = engine.generate(asked(turn, MODALITIES["text"]()))
    speech = asked(turn, MODALITIES["audio"]())
    _, tokens, audio = engine.generate(speech)
    _, _, again = engine.generate(asked(turn, MODALITIES["audio"]()))
    assert (text.metrics.adapter, audio.metrics.adapter) == ("base", "speech")
    assert (text.metrics.cached_tokens, audio.metrics.cached_tokens) == (0, 0)
    assert tokens == reference_tokens(reference_model, engine, speech, "speech")
    assert again.metrics.cached_tokens > 0


def test_a_text_conversations_next_turn_starts_after_the_previous_prompt(engine, reference_model):
    first = [Message("user", [TextPart(f"Name a colour {uuid.uuid4().hex}.")])]
    asked_first = GenerationRequest(first, SamplingParams(max_new_tokens=6))
    answer, _, one = engine.generate(asked_first)
    second = first + [Message("assistant", [TextPart(answer)]), Message("user", [TextPart("And another?")])]
    request = GenerationRequest(second, SamplingParams(max_new_tokens=12))
    _, tokens, two = engine.generate(request)
    assert engine.prepare(asked_first).shared_prefix == 0  # no system turn: only the whole prompt is kept
    assert (one.metrics.cached_tokens, two.metrics.cached_tokens) == (0, one.metrics.prompt_tokens - 1)
    assert tokens == reference_tokens(reference_model, engine, request, "base")


def test_a_photo_conversations_next_turn_starts_after_the_photo_and_still_equals_generate(engine, reference_model):
    """Clients send the photo again with every turn: the next turn skips its encoding and prefill."""
    first = [Message("user", [ImagePart(make_photo(seed=7)), TextPart(f"What is this {uuid.uuid4().hex}?")])]
    asked_first = GenerationRequest(first, SamplingParams(max_new_tokens=6))
    answer, _, one = engine.generate(asked_first)
    second = first + [Message("assistant", [TextPart(answer)]), Message("user", [TextPart("And the sun?")])]
    request = GenerationRequest(second, SamplingParams(max_new_tokens=12))
    _, tokens, two = engine.generate(request)
    assert (one.metrics.cached_tokens, two.metrics.cached_tokens) == (0, one.metrics.prompt_tokens - 1)
    assert tokens == reference_tokens(reference_model, engine, request, "vision")


@pytest.mark.parametrize(
    "kind, other",
    [
        ("image", lambda: ImagePart(make_photo(seed=8))),
        ("audio", lambda: AudioPart(make_tone(hz=660.0))),
    ],
)
def test_other_media_with_the_same_words_computes_its_own(engine, reference_model, kind, other):
    """Placeholders' ids are the same whatever the media: the words and ids of an earlier request
    with another photo (or clip) must not lend it that one's keys and values."""
    words = TextPart(f"Tell me about it {uuid.uuid4().hex}.")
    engine.generate(
        GenerationRequest([Message("user", [MODALITIES[kind]()[0], words])], SamplingParams(max_new_tokens=1))
    )
    request = GenerationRequest([Message("user", [other(), words])], SamplingParams(max_new_tokens=12))
    _, tokens, final = engine.generate(request)
    assert final.metrics.cached_tokens == 0  # no system turn, and the whole prompt is another's
    assert tokens == reference_tokens(reference_model, engine, request, EXPECTED_ADAPTER[kind])


def test_a_turn_that_adds_a_photo_starts_after_its_system_turn_only(engine, reference_model):
    """Every photo's placeholders go in with one chunk: a kept beginning holding the first photo
    cannot serve a prompt with a second one after it."""
    turn = system()
    first = [turn, Message("user", MODALITIES["image"]())]
    answer, _, _ = engine.generate(GenerationRequest(first, SamplingParams(max_new_tokens=4)))
    second = first + [Message("assistant", [TextPart(answer)]), Message("user", [ImagePart(make_photo(seed=9))])]
    request = GenerationRequest(second, SamplingParams(max_new_tokens=12))
    _, tokens, final = engine.generate(request)
    assert final.metrics.cached_tokens == engine.prepare(request).shared_prefix > 0
    assert tokens == reference_tokens(reference_model, engine, request, "vision")


@pytest.mark.slow  # two prefills of 4,100 tokens
def test_a_prompt_past_the_longrope_switch_neither_uses_nor_gives_a_turn(engine):
    """Past 4,096 tokens every rotary frequency, the system turn's too, takes the long factors: keys
    kept from a short prompt would be wrong there, and a long prompt's are wrong for a short one."""
    turn = system()
    long_text = [TextPart(engine.tokenizer.decode(engine.tokenizer("fox " * 4200).input_ids[:4150]))]
    _, _, long_first = engine.generate(asked(turn, long_text, 1))
    _, _, short = engine.generate(asked(turn, [TextPart("Hi")], 1))
    _, _, long_again = engine.generate(asked(turn, long_text, 1))
    assert long_first.metrics.prompt_tokens > engine.runner.longrope_switch_at
    assert (long_first.metrics.cached_tokens, short.metrics.cached_tokens, long_again.metrics.cached_tokens) == (0,) * 3


def test_kept_tokens_are_bounded_oldest_used_first(engine):
    prompts = [GenerationRequest([Message("user", [TextPart(f"Hi {uuid.uuid4().hex}")])]) for _ in range(3)]
    lengths = [engine.prepare(prompt).prompt_tokens - 1 for prompt in prompts]  # each kept whole but its last

    def cached(prompt) -> int:
        _, _, final = engine.generate(GenerationRequest(prompt.messages, SamplingParams(max_new_tokens=1)))
        return final.metrics.cached_tokens

    engine.enable_batching(1, prefixes=lengths[1] + lengths[2])  # room for two of the three
    try:
        for prompt in prompts:
            cached(prompt)
        # newest first: each hit moves its prompt up, so the oldest is the one found dropped
        assert [cached(prompts[i]) for i in (2, 1, 0)] == [lengths[2], lengths[1], 0]
        engine.enable_batching(1, prefixes=lengths[0] - 1)  # a prompt longer than the whole room: never kept
        assert [cached(prompts[0]) for _ in range(2)] == [0, 0]
    finally:
        engine.enable_batching(1)


def test_rows_decoding_together_share_a_turn_and_each_equals_its_lone_answer(engine):
    """Four requests at once on the threaded loop, one system turn kept for each adapter by the
    same requests alone: each answer equals its answer alone."""
    turn = system()
    kinds = list(MODALITIES)
    engine.enable_batching(4)
    try:
        alone = {kind: engine.generate(asked(turn, MODALITIES[kind]()))[1] for kind in kinds}
        results = {}

        def run(kind):
            results[kind] = engine.generate(asked(turn, MODALITIES[kind]()))

        threads = [threading.Thread(target=run, args=(kind,)) for kind in kinds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        engine.enable_batching(1)
    assert {kind: results[kind][1] for kind in kinds} == alone
    assert all(results[kind][2].metrics.cached_tokens > 0 for kind in kinds)


def test_media_is_digested_only_for_the_cache_and_a_prompt_without_its_digest_is_not_kept_whole(engine):
    """The digest costs ~6 ms a megapixel, so it is skipped with the cache off; a prompt prepared
    then and prefilled after the cache came on must not be kept as if it had no media."""
    photo = GenerationRequest([Message("user", [ImagePart(make_photo(seed=10)), TextPart(uuid.uuid4().hex)])])
    engine.enable_batching(1, prefixes=0)
    try:
        prepared = engine.prepare(photo)
    finally:
        engine.enable_batching(1)
    assert prepared.media_key == "" and engine.prepare(photo).media_key
    cache = engine.scheduler.prefixes.start(prepared)
    with engine.runner.turn([prepared.adapter]):
        engine.runner.prefill(prepared, cache, prepared.prompt_tokens)
    engine.scheduler.prefixes.keep(prepared, cache)
    other = GenerationRequest([Message("user", [ImagePart(make_photo(seed=11)), photo.messages[0].parts[1]])])
    _, _, final = engine.generate(GenerationRequest(other.messages, SamplingParams(max_new_tokens=1)))
    assert final.metrics.cached_tokens == 0


def test_by_default_the_room_is_sized_from_free_memory_and_six_photo_conversations_taking_turns_all_find_theirs(
    engine,
):
    """A fixed 4,096 tokens held five of these conversations' prompts (~780 tokens each, a photo):
    taking turns, each dropped the one the next needed, and none was ever found again."""
    turn = system()
    photos = [asked(turn, [ImagePart(make_photo(seed=20 + i)), TextPart("Describe it.")], 1) for i in range(6)]
    engine.enable_batching(1)  # the default room: prefix_cache_tokens None
    try:
        assert engine.scheduler.prefixes.tokens == room_for(engine) > 4096
        first = [engine.generate(photo)[2].metrics for photo in photos]
        again = [engine.generate(photo)[2].metrics for photo in photos]
    finally:
        engine.enable_batching(1)
    assert sum(metrics.prompt_tokens for metrics in first) > 4096
    assert [metrics.cached_tokens for metrics in again] == [metrics.prompt_tokens - 1 for metrics in first]


def test_the_room_is_a_tenth_of_free_memory_at_most_65536_tokens_and_4096_where_memory_is_unknown(engine, monkeypatch):
    per_token = kv_bytes_per_token(engine.model, engine.dtype)
    for free, tokens in ((None, 4096), (per_token * 10 * 3000, 3000), (per_token * 10 * 10**6, 65_536), (0, 0)):
        monkeypatch.setattr(prefix_cache, "free_bytes", lambda device, free=free: free)
        assert room_for(engine) == tokens


def test_free_memory_on_a_cpu_is_what_the_kernel_says_is_available():
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < free_bytes(torch.device("cpu")) <= total


def while_another_decodes(engine, work):
    """-> (the other request's result, work()'s), work run once a 40-token request is decoding."""
    results = {}
    running = threading.Thread(
        target=lambda: results.update(running=engine.generate(asked(system(), MODALITIES["text"](), 40)))
    )
    running.start()
    for _ in range(1000):
        if engine.scheduler.rows:
            break
        threading.Event().wait(0.01)
    done = work()
    running.join()
    return results["running"], done


@pytest.mark.parametrize("path", ["dynamic", "static"])
def test_a_prompt_kept_whole_joins_running_rows_without_a_forward_pass_of_its_own(
    path, engine, slot_engines, reference_model, monkeypatch
):
    """Found kept whole but its last token, a prompt joins the rows at once and their next step
    feeds that token (engine/row.py `Row.fed`): no prefill of its own, and still `generate`'s answer."""
    on = engine if path == "dynamic" else slot_engines("static")
    repeat = asked(system(), MODALITIES["image"](), 8)
    ids = on.prepare(repeat).input_ids
    prefilled = []
    prefill = on.runner.prefill
    monkeypatch.setattr(
        on.runner,
        "prefill",
        lambda prepared, cache, end: prefilled.append(prepared.input_ids) or prefill(prepared, cache, end),
    )
    on.enable_batching(4)  # a new scheduler keeps nothing yet
    try:
        on.generate(repeat)  # kept whole but its last token
        prefilled.clear()
        running, (_, tokens, final) = while_another_decodes(on, lambda: on.generate(repeat))
    finally:
        on.enable_batching(1)
    assert len(running[1]) == 40 and len(prefilled) == 1  # the running request's own prefill
    assert not any(torch.equal(prompt, ids) for prompt in prefilled)
    assert final.metrics.cached_tokens == ids.shape[1] - 1
    assert tokens == reference_tokens(reference_model, on, repeat, "vision")


def test_a_prompt_kept_whole_gets_its_first_token_in_the_round_that_feeds_its_last(engine, monkeypatch):
    """As soon as after a prefill of its own: not a round later, behind other prompts' chunks."""
    repeat = asked(system(), MODALITIES["text"](), 4)
    _, answer, _ = engine.generate(repeat)  # kept whole but its last token
    rounds, round_ = [], engine.scheduler._round
    monkeypatch.setattr(engine.scheduler, "_round", lambda: rounds.append(len(rounds)) or round_())
    chunks = engine.stream(repeat)
    first = next(chunk for chunk in chunks if chunk.token_ids)
    assert len(rounds) == 1
    assert list(first.token_ids) + [token for chunk in chunks for token in chunk.token_ids] == answer


def test_an_answer_that_ends_on_its_early_first_token_leaves_at_once(engine):
    """One request at a time no round follows until the next request: the row must not keep its
    cache (or a static slot) until then."""
    repeat = asked(system(), MODALITIES["text"](), 1)
    engine.generate(repeat)  # kept whole but its last token
    _, answer, final = engine.generate(repeat)
    assert len(answer) == 1 and final.metrics.cached_tokens > 0
    assert engine.scheduler.idle and not engine.scheduler._padded.members


def test_a_prompt_kept_whole_that_cannot_join_the_rows_fails_alone(engine, monkeypatch):
    """Joining builds the batch's cache anew, the likeliest place to run out of memory: as with a
    failing prefill, that request fails and the running one goes on."""
    repeat = asked(system(), MODALITIES["text"](), 4)
    ids = engine.prepare(repeat).input_ids

    def refused():
        with pytest.raises(GenerationFailed):
            engine.generate(repeat)

    engine.enable_batching(4)
    try:
        engine.generate(repeat)  # kept whole but its last token
        adopt = engine.scheduler._padded.adopt

        def no_room_for_the_repeat(row, cache):
            if torch.equal(row.prepared.input_ids, ids):
                raise torch.OutOfMemoryError("no room to join")
            return adopt(row, cache)

        monkeypatch.setattr(engine.scheduler._padded, "adopt", no_room_for_the_repeat)
        running, _ = while_another_decodes(engine, refused)
    finally:
        engine.enable_batching(1)
    assert len(running[1]) == 40


def test_a_containers_memory_limit_bounds_the_free_memory(tmp_path):
    """Inside Docker (`--memory`) or a pod, /proc/meminfo gives the host's memory: the cgroup's
    limit less its use is what is left (v2 files, else v1; no limit: None)."""
    v2, v1 = tmp_path / "v2", tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    v2.mkdir()
    (v2 / "memory.max").write_text("8589934592\n")
    (v2 / "memory.current").write_text("6442450944\n")
    (v1 / "memory" / "memory.limit_in_bytes").write_text("4294967296\n")
    (v1 / "memory" / "memory.usage_in_bytes").write_text("5000000000\n")
    assert cgroup_headroom(v2) == 2 * 2**30
    assert cgroup_headroom(v1) == 0  # over its limit: nothing left
    (v2 / "memory.max").write_text("max\n")
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert cgroup_headroom(v2) is None and cgroup_headroom(v1) is None and cgroup_headroom(tmp_path) is None


def test_free_memory_is_not_asked_of_a_gpu_that_has_not_started():
    """ZeroGPU loads the model onto a virtual device, where CUDA must not start (app/zero_gpu.py)."""
    if torch.cuda.is_initialized():
        pytest.skip("CUDA runs in this process already")
    assert free_bytes(torch.device("cuda")) is None
    assert not torch.cuda.is_initialized()
