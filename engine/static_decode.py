"""The fast path for one request at a time: a KV cache allocated once (transformers' StaticCache)
and, in `compiled` mode, a `torch.compile`d decode step (replayed as a CUDA graph on a GPU) and,
when asked for, a compiled prefill whose prompt is padded up to a 64-token bucket (one graph serves
every length; the padding keeps the shapes tensor-core friendly and off PyTorch's size-0/1 special
cases). Otherwise the prompt is prefilled eagerly into an exact-size cache that is then copied in.

Start-up cost, measured at full size on an H200 (bench/RESULTS.md): compiling the decode step takes
about a minute per adapter (52.7 s base, 60.4 s vision), and gives 180 tok/s against the dynamic
path's 51. A compiled prefill would add a graph per adapter again, for a gain nobody has measured on
a GPU yet, so it is off unless asked for (`compile_prefill=True`).

Streaming never makes the host wait on the device between tokens: `StaticRun.advance` queues the
decode step for token k+1 before it reads token k back, so the device is always one step ahead
of the host, which detokenises and sends meanwhile.

Modes (`Settings.decode`): `compiled`, `static` (the same path, eager; no compile wait),
`dynamic` (transformers' growing DynamicCache, eager), `auto` (compiled on CUDA, dynamic on CPU).
Requests whose prompt plus answer exceed the static cache fall back to the dynamic path, which
also handles the long-RoPE switch at 4,096 tokens.
"""

from __future__ import annotations

import logging

import torch
from transformers import StaticCache
from transformers.cache_utils import Cache, StaticLayer

from engine.decode import ModelRunner, PreparedPrompt
from engine.sampling import Sampler

log = logging.getLogger(__name__)

MODES = ("auto", "compiled", "static", "dynamic")
BUCKET = 64  # prompt lengths are padded up to a multiple of 64 tokens


def resolve_mode(mode: str, model, device: torch.device) -> str:
    if mode not in MODES:
        raise ValueError(f"Unknown decode mode {mode!r}; use one of {', '.join(MODES)}.")
    if mode != "auto":
        return mode
    # bitsandbytes layers do not compile to one graph; on a CPU the compile wait outweighs the gain
    quantized = getattr(model, "hf_quantizer", None) is not None
    return "compiled" if device.type == "cuda" and not quantized else "dynamic"


class FullStaticCache(StaticCache):
    """transformers' StaticCache with plain (full-attention) layers only. The released config's
    `sliding_window` (262,144) makes StaticCache build sliding-window layers, which also count their
    length in a Python int: our bookkeeping (`_set_length`) and a compiled graph cannot follow that
    counter, so decoding restarted at position 0. A window at least as long as the cache never
    slides, so plain layers attend exactly alike (StaticDecoder keeps the capacity within it)."""

    def __init__(self, config, max_cache_len: int):
        layers = config.get_text_config(decoder=True).num_hidden_layers
        Cache.__init__(self, layers=[StaticLayer(max_cache_len=max_cache_len) for _ in range(layers)])


def bucket_length(length: int, capacity: int) -> int:
    return min(-(-length // BUCKET) * BUCKET, capacity)


class StaticDecoder:
    """Owns the static cache (batch 1) and the two forward passes that fill it. Its callers hold
    the runner's turn (engine/decode.py) around every call that runs the model."""

    def __init__(
        self,
        runner: ModelRunner,
        dtype: torch.dtype,
        device: torch.device,
        capacity: int,
        compiled: bool,
        compile_prefill: bool = False,
    ):
        model, config = runner.model, runner.model.config
        self.runner = runner
        self.model = model
        self.dtype, self.device = dtype, device
        window = getattr(config.get_text_config(decoder=True), "sliding_window", None)
        self.capacity = min(capacity, window or capacity)  # tokens the cache holds: prompt + answer must fit
        self.cache = FullStaticCache(config, max_cache_len=self.capacity)
        head_dim = config.hidden_size // config.num_attention_heads
        self.cache.early_initialization(1, config.num_key_value_heads, head_dim, dtype, device)
        self.cuda_graphs = compiled and device.type == "cuda"
        # opt-in: on a CPU a compiled prefill measured slower than an eager one, and on a GPU it
        # would add a minute of start-up per adapter (see the module's docstring)
        self.compile_prefill = compiled and compile_prefill
        self._prefill_fn, self._decode_fn = self._prefill, self._decode
        if compiled:
            # long-RoPE builds its long-factor frequencies on first use, which a graph with a
            # symbolic length cannot trace: build them now
            with torch.no_grad():
                position = torch.zeros(1, 1, dtype=torch.long, device=device)
                model.model.rotary_emb(torch.zeros(1, dtype=dtype, device=device), position)
            # one decode graph per adapter; guards on PEFT's adapter state pick the right one
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 32)
            self._decode_fn = torch.compile(
                self._decode, fullgraph=True, dynamic=False, mode="reduce-overhead" if self.cuda_graphs else None
            )
        if self.compile_prefill:
            # one graph per adapter for every bucket: the length is a symbolic size
            self._prefill_fn = torch.compile(self._prefill, fullgraph=True, dynamic=None)
        self.uncompiled: list[str] = []  # steps that failed to compile and run eagerly instead

    def warm_up(self, adapters: list[str]) -> None:
        """Compiles every graph now, one per adapter, so no request waits for it and nothing
        compiles while other threads are busy with requests (tracing is not safe to overlap
        with them: it crashed the process in bench/asr.py)."""
        config = self.model.config
        for adapter in adapters:
            with self.runner.turn([adapter]):
                if self.compile_prefill:
                    self._set_length(0)
                    embeds = torch.zeros(1, BUCKET, config.hidden_size, dtype=self.dtype, device=self.device)
                    torch._dynamo.mark_dynamic(embeds, 1)
                    self._run("prefill", embeds, torch.tensor([BUCKET - 1], device=self.device))
                self._set_length(BUCKET)
                token = torch.zeros(1, 1, dtype=torch.long, device=self.device)
                for _ in range(3):  # CUDA graphs record on the second or third call
                    self.step(token)

    def fits(self, prompt_tokens: int, max_new_tokens: int) -> bool:
        return prompt_tokens + max_new_tokens <= self.capacity

    # -- the forward passes (what torch.compile sees) ---------------------------------------

    def _prefill(self, embeds: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        out = self.model(inputs_embeds=embeds, past_key_values=self.cache, use_cache=True, logits_to_keep=last)
        return out.logits[:, -1].float()

    def _decode(self, token: torch.Tensor) -> torch.Tensor:
        # positions come from the cache's own length counter, a device tensor: nothing per step
        # is a Python number the graph would have to be specialised on
        out = self.model(input_ids=token, past_key_values=self.cache, use_cache=True)
        return out.logits[:, -1].float()

    def _run(self, name: str, *args) -> torch.Tensor:
        fn = getattr(self, f"_{name}_fn")
        try:
            return fn(*args)
        except Exception as err:  # noqa: BLE001 - a model or PyTorch build that will not compile still answers
            if fn is getattr(self, f"_{name}"):
                raise
            log.warning("torch.compile failed for the %s step (%s); running it uncompiled", name, err)
            # compiling fails before the graph runs, so the cache is as it was
            self.uncompiled.append(name)
            setattr(self, f"_{name}_fn", getattr(self, f"_{name}"))
            return getattr(self, f"_{name}")(*args)

    # -- cache bookkeeping -------------------------------------------------------------------

    def _set_length(self, length: int) -> None:
        for layer in self.cache.layers:
            layer.cumulative_length.fill_(length)

    def prefill(self, prepared: PreparedPrompt) -> torch.Tensor:
        """Fills the cache with the prompt (media merged into its embeddings) -> next-token logits."""
        ids = prepared.input_ids
        if not self.compile_prefill:
            # eager attention over the prompt alone is faster than over the whole static cache
            # (bench/RESULTS.md): prefill into an exact-size cache, then copy it in
            logits, cache = self.runner.forward(prepared, ids, self.runner.new_cache())
            self.load([(layer.keys, layer.values) for layer in cache.layers])
            return logits.float()
        inner = self.model.model
        embeds = inner.embed_tokens_extend(ids, inner.embed_tokens(ids), **prepared.media)
        length = ids.shape[1]
        bucket = bucket_length(length, self.capacity)
        # right padding: the padded positions are written to the cache but never attended to (the
        # causal mask hides keys after the query), and decoding overwrites them one by one
        embeds = torch.cat([embeds, embeds.new_zeros(1, bucket - length, embeds.shape[2])], dim=1)
        self._set_length(0)
        torch._dynamo.mark_dynamic(embeds, 1)  # the length is a symbol: other sizes stay static
        logits = self._run("prefill", embeds, torch.tensor([length - 1], device=ids.device))
        self._set_length(length)
        return logits

    def step(self, token: torch.Tensor) -> torch.Tensor:
        """Appends `token` (shape (1, 1), on the device) to the cache -> the next logits."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's logits are consumed
        return self._run("decode", token)

    def load(self, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Copies a batch-1 (keys, values) per layer into the cache."""
        length = layers[0][0].shape[2]
        for layer, (keys, values) in zip(self.cache.layers, layers):
            layer.keys[:, :, :length].copy_(keys)
            layer.values[:, :, :length].copy_(values)
        self._set_length(length)

    def export(self, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The first `length` cached positions as (keys, values) per layer, copied out."""
        return [(layer.keys[:, :, :length].clone(), layer.values[:, :, :length].clone()) for layer in self.cache.layers]


class StaticRun:
    """One request decoding on the static cache; every call is made in the runner's turn for
    the request's adapter.

    Invariant: the cache holds every token of `ids`, and `logits` (possibly still being computed
    on the device) predict the next one."""

    def __init__(self, decoder: StaticDecoder, ids: torch.Tensor, sampler: Sampler, logits: torch.Tensor):
        self.decoder = decoder
        self.ids = ids  # (1, n) prompt + tokens so far (the logits processors read it)
        self.sampler = sampler
        self.logits = logits

    @classmethod
    def start(cls, decoder: StaticDecoder, prepared: PreparedPrompt, sampler: Sampler) -> "StaticRun":
        return cls(decoder, prepared.input_ids, sampler, decoder.prefill(prepared))

    @classmethod
    def resume(
        cls,
        decoder: StaticDecoder,
        ids: torch.Tensor,
        sampler: Sampler,
        layers: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> "StaticRun":
        """From a cache holding all of `ids` but the last token (the batched path's invariant)."""
        decoder.load(layers)
        last = ids[:, -1:].clone(memory_format=torch.contiguous_format)  # strides (1, 1): no recompile
        return cls(decoder, ids, sampler, decoder.step(last))

    def advance(self) -> int:
        """Chooses the next token, queues the step after it, and only then reads it back."""
        if self.logits is None:
            raise RuntimeError("the static KV cache is full")  # StaticDecoder.fits keeps requests from here
        token = self.sampler.choose(self.ids, self.logits)
        self.ids = torch.cat([self.ids, token[:, None]], dim=1)
        self.logits = None
        if self.ids.shape[1] < self.decoder.capacity:
            self.logits = self.decoder.step(token[:, None])
        return int(token[0])

    def export(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The cache for all of `ids` but the last token; the queued step is dropped and the
        batched path recomputes it."""
        return self.decoder.export(self.ids.shape[1] - 1)
