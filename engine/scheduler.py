"""The one decode loop: every request the local engine serves is a row here, a lone one as a batch
of one. Each round admits waiting requests (prefill), chooses every row's next token in one
vectorised pass (engine/sampling.py `choose_rows`), takes one decode step for every row, and
hands each row its token. Rows join and leave between two rounds; no cache ever moves between
paths. Where a row's cache lives is engine/row_caches.py's business:

- on the slot cache (static or compiled, every adapter mix in one graph per batch bucket) when
  the engine has one, the row fits it, and a slot is free;
- else on the padded dynamic batch, while prompt plus answer stay under the long-RoPE switch;
- else alone on a cache of its own (past the switch), still one step per round.

Admission and prefill (which does not stall decoding) are engine/admission.py's.

On a GPU the next step is queued before the chosen tokens are read back, so the device is one
step ahead of the host (which detokenises and sends meanwhile); a row that just chose its end
token wastes that one step. On a CPU there is nothing to overlap, and the step waits for the
read-back so that a finished row is not stepped.

With `max_batch` > 1 the loop runs on a thread of its own and each reader is woken per token
(`GenerationRequest.on_token`). One at a time (`max_batch` 1, ZeroGPU's setting: no thread may
outlive a GPU call) the reader that needs a token runs the next round in its own thread, and rows
beyond the first decode alone, interleaved.

One request's failure fails it alone: a failing prefill ends that request; a failing step is
retried row by row (row_caches), and only a row that fails alone gets the error.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from typing import Iterator

import torch

from core.errors import ShuttingDown, release_memory
from core.settings import DEFAULTS
from engine.admission import Admission
from engine.decode import PreparedPrompt
from engine.prefix_cache import PrefixCache, room_for
from engine.request import PENDING, GenerationRequest
from engine.row import Row, next_tokens
from engine.row_caches import OwnRows, PaddedRows, SlotRows
from engine.sampling import Sampler
from engine.text_stream import StopWatch

log = logging.getLogger(__name__)


class Scheduler(Admission):
    def __init__(
        self, engine, max_batch: int, prefill_chunk: int = 512, prefixes: int | None = DEFAULTS.prefix_cache_tokens
    ):
        self.engine = engine  # for its slot decoder; the model only through its runner
        self.runner = engine.runner
        self.max_batch = max_batch
        self.prefill_chunk = prefill_chunk  # prompt tokens per round while rows decode (0: whole)
        # tokens of shared prompt beginnings kept (0: none; None: sized from free memory)
        self.prefixes = PrefixCache(self.runner, room_for(engine) if prefixes is None else prefixes)
        self.threaded = max_batch > 1
        self.ahead = engine.device.type == "cuda"  # queue the next step before reading tokens back
        self.pending: list[Row] = []  # submitted, waiting to be admitted
        self.prefilling: list[Row] = []  # admitted, their prompts going in chunk by chunk, in turn
        self.rows: list[Row] = []  # decoding, in the order of `_logits`
        self._logits: torch.Tensor | None = None  # (len(rows), vocab): each row's next-token logits
        self._vocab = engine.model.config.get_text_config(decoder=True).vocab_size
        self._slots: SlotRows | None = None
        self._padded = PaddedRows(self.runner)
        self._own = OwnRows(self.runner)
        self._wake = threading.Condition()
        self._drive = threading.Lock()  # the one reader running a round, when not threaded
        self._thread: threading.Thread | None = None
        self._closing = False
        self.steps = 0  # decode rounds that stepped two rows or more
        self.rows_stepped = 0  # rows over those rounds (mean batch = rows_stepped / steps)
        self.host_seconds = 0.0  # time of rounds outside the forward passes (inputs, sampling, hand-off)

    # -- the callers' side ------------------------------------------------------------------------

    def submit(
        self, request: GenerationRequest, prepared: PreparedPrompt, sampler: Sampler | None = None
    ) -> Iterator[int]:
        row = Row(request, prepared, sampler or self.engine.sampler(request, prepared))
        if request.params.stop:
            row.stops = StopWatch(self.engine.tokenizer, request.params.stop)
        with self._wake:
            if self._closing:
                raise ShuttingDown()
            self.pending.append(row)
            if self._thread is None and self.threaded:
                self._thread = threading.Thread(target=self._loop, name="decode-scheduler", daemon=True)
                self._thread.start()
                atexit.register(self.close)  # never kill the loop inside a forward pass at exit
            self._wake.notify()
        return self._tokens(row)

    def close(self, wait: bool = True) -> None:
        """Stops the loop between two rounds; waiting and running requests end with ShuttingDown."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        if wait and self._thread is not None:
            self._thread.join(timeout=5)
        if not self.threaded and self._drive.acquire(blocking=False):  # else the driving reader ends it
            try:
                self._turn(wait=False)
            finally:
                self._drive.release()

    @property
    def idle(self) -> bool:
        return not self.rows and not self.pending and not self.prefilling

    def _tokens(self, row: Row) -> Iterator[int]:
        try:
            while True:
                if row.request.on_token is not None and self.threaded and row.out.empty():
                    yield PENDING  # the caller is told of the next token (GenerationRequest.on_token)
                    continue
                if (item := self._next(row)) is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            row.done.set()  # finished, closed or cancelled: the loop drops the row at its next round

    def _next(self, row: Row):
        """The row's next item. With no loop thread, the reader that needs a token runs the next
        round itself (one reader at a time), which steps every row once."""
        while not self.threaded and row.out.empty():
            with self._drive:
                if row.out.empty() and not self._turn(wait=False):
                    break
        return row.out.get()

    # -- the loop ---------------------------------------------------------------------------------

    def _loop(self) -> None:
        while self._turn(wait=True):
            pass

    def _turn(self, wait: bool) -> bool:
        """One round: admit, then step every row once -> False once closed. `wait`: sleep until
        there is work (the loop's thread); otherwise return at once."""
        self._drop(lambda row: row.leaving, stopped=True)  # readers that left make room first
        with self._wake:
            while wait and self.idle and not self._closing:
                self._wake.wait()
            if self._closing:
                self._end_all(ShuttingDown())
                return False
            joining = self._joining()
        try:
            for row in joining:
                self._admit(row)
            self._prefill()
            if self.rows:
                self._round()
        except Exception as err:  # noqa: BLE001 - a fault outside any one row's forward pass
            log.exception("decode loop round failed")
            self._end_all(err)
        return True

    def _round(self) -> None:
        began = time.perf_counter()
        rows = self.rows
        tokens = next_tokens(rows, self._logits)
        chosen = None if self.ahead else tokens.tolist()  # ahead: read back after the next step is queued
        going = [
            i
            for i, row in enumerate(rows)
            if not row.leaving and not self._ends_here(row, None if chosen is None else chosen[i])
        ]
        for i in set(range(len(rows))) - set(going):
            rows[i].home.release(rows[i])
        joined = [row for row in rows if row.fed is not None and not row.tokens]  # their prompt's last token
        forward, failed = self._step([rows[i] for i in going], tokens if len(going) == len(rows) else tokens[going])
        for i, (row, token) in enumerate(zip(rows, chosen or tokens.tolist())):  # one read-back for all
            if row.fed is None:
                self._emit(row, token)
            row.fed = None
            if i not in going and not row.done.is_set():
                row.put(None)  # cancelled meanwhile: its consumer sees the end
        for row, err in failed.items():  # after its token: that one was chosen before the failure
            self._fail(row, err)
        if joined:
            self._first_tokens(joined)
        self.host_seconds += time.perf_counter() - began - forward

    def _first_tokens(self, joined: list[Row]) -> None:
        """Rows that joined with their prompt's last token fed (`_joins_fed`) choose their first
        token from this step's logits now, so it goes out this round, as after a prefill of their
        own; the next step feeds it."""
        index = [i for i, row in enumerate(self.rows) if any(row is other for other in joined)]
        if not index:  # they failed or left
            return
        tokens = next_tokens([self.rows[i] for i in index], self._logits[index]).tolist()
        for i, token in zip(index, tokens):
            self._emit(self.rows[i], token)
            self.rows[i].fed = token
        self._drop(lambda row: row.done.is_set(), stopped=False)  # answers that ended there: no round may follow

    def _ends_here(self, row: Row, token: int | None) -> bool:
        """Whether the row's answer ends with its token of this round (None: not read back yet, so
        by its length cap alone): such a row is not stepped. A fed token ends nothing here (a row whose
        first token, chosen early, ended its answer has left: `_first_tokens`)."""
        if row.fed is not None:
            return False
        if token is None:
            return len(row.tokens) + 1 >= row.prepared.max_new_tokens
        return self.runner.finished(row.prepared, len(row.tokens) + 1, token)

    def _step(self, going: list[Row], tokens: torch.Tensor) -> tuple[float, dict]:
        """One decode step for `going` (tokens[i] appended to going[i]), each kind of cache its own
        step -> (seconds spent in them, the rows that failed alone: their errors). `rows` and
        `_logits` become the rows that go on."""
        began, kept, logits, failures = time.perf_counter(), [], [], {}
        for home in (self._slots, self._padded, self._own):
            index = [i for i, row in enumerate(going) if row.home is home]
            if not index:
                continue
            members = [going[i] for i in index]
            step_logits, failed = home.step(members, tokens if len(index) == len(going) else tokens[index])
            failures.update(failed)
            kept += [row for row in members if row not in failed]
            if len(failed) < len(members):
                logits.append(step_logits)
        if len(going) > 1:
            self.steps += 1
            self.rows_stepped += len(going)
        self.rows = kept
        self._logits = (logits[0] if len(logits) == 1 else torch.cat([x.float() for x in logits])) if kept else None
        return time.perf_counter() - began, failures

    def _emit(self, row: Row, token: int) -> None:
        row.tokens.append(token)
        if self.runner.finished(row.prepared, len(row.tokens), token) or (row.stops and row.stops.hit(token)):
            row.done.set()  # the consumer will finish on this token (its reader is told it is the last)
        row.put(token)

    def _drop(self, leaving, stopped: bool) -> None:
        """Rows for which `leaving(row)` holds leave the batch (their caches are freed)."""
        keep = [i for i, row in enumerate(self.rows) if not leaving(row)]
        if len(keep) == len(self.rows):
            return
        for i, row in enumerate(self.rows):
            if i not in keep:
                row.home.release(row)
                if stopped and not row.done.is_set():
                    row.put(None)  # a cancelled row's consumer sees the end; a finished one has its last token
        self._logits = self._logits[keep] if keep else None
        self.rows = [self.rows[i] for i in keep]

    def _fail(self, row: Row, err: Exception) -> None:
        log.error("one request failed in the decode loop", exc_info=err)
        if row.home is not None:
            row.home.release(row)
        row.put(err)
        row.done.set()
        release_memory(err)

    def _end_all(self, err: Exception) -> None:
        for row in self.rows + self.prefilling + self.pending:
            if row.home is not None:
                row.home.release(row)
            row.prefill_cache = None
            row.put(err)
        self.rows, self.prefilling, self.pending, self._logits = [], [], [], None
