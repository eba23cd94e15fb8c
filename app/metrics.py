"""Prometheus metrics for `GET /metrics`: requests by endpoint and status (499: the client left
before its request was whole, as nginx counts it; app/api_errors.py), time to first token,
tokens, adapter use, finish reasons, queue depth. One registry per server (not the library's
global one), so several servers in one process never share counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from app.admission import Admission

# TTFT buckets from a warm GPU (tens of ms) to a long audio prompt on CPU (tens of seconds)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, admission: Admission):
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, CPU seconds, open files
        self.requests = Counter(
            "phi4mm_requests", "HTTP API requests by endpoint and status code", ["endpoint", "code"], registry=registry
        )
        self.ttft = Histogram(
            "phi4mm_time_to_first_token_seconds",
            "Request start to first generated token",
            ["adapter"],
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "phi4mm_prompt_tokens", "Prompt tokens (text plus media)", ["adapter"], registry=registry
        )
        self.cached_tokens = Counter(
            "phi4mm_cached_prompt_tokens",
            "Prompt tokens whose keys and values were kept from an earlier request",
            ["adapter"],
            registry=registry,
        )
        self.completion_tokens = Counter("phi4mm_completion_tokens", "Generated tokens", ["adapter"], registry=registry)
        self.adapter_requests = Counter(
            "phi4mm_adapter_requests", "Finished generations by LoRA adapter", ["adapter"], registry=registry
        )
        self.finished = Counter(
            "phi4mm_finished", "Finished generations by finish reason", ["reason"], registry=registry
        )
        Gauge(
            "phi4mm_queue_depth", "API requests admitted and waiting for a generation slot", registry=registry
        ).set_function(lambda: admission.queued)
        Gauge("phi4mm_requests_in_flight", "API requests generating now", registry=registry).set_function(
            lambda: admission.running
        )

    def watch(self, service) -> None:
        """The conversation service's safety counters, read at each scrape."""
        self.registry.register(SafetyCounters(service))

    def count(self, endpoint: str | None, status: int) -> None:
        """An API request answered with an error: by a route, or at the front door (app/gate.py)
        before any route saw it; or cancelled by its client during the upload (499, no answer
        sent). Other paths (the browser app's) have no endpoint label."""
        if endpoint is not None:
            self.requests.labels(endpoint, str(status)).inc()

    def answered(self, endpoint: str, response):
        """Counts a route's answer under its endpoint label and hands it back."""
        self.requests.labels(endpoint, str(response.status_code)).inc()
        return response

    def record_reply(self, reply) -> None:
        """The service calls this once per generation with its last reply (UI, API and CLI alike)."""
        self.finished.labels(reply.finish_reason or "cancelled").inc()
        self.adapter_requests.labels(reply.adapter).inc()
        if reply.metrics is not None:
            m = reply.metrics
            self.ttft.labels(m.adapter).observe(m.ttft_s)
            self.prompt_tokens.labels(m.adapter).inc(m.prompt_tokens)
            self.cached_tokens.labels(m.adapter).inc(m.cached_tokens)
            self.completion_tokens.labels(m.adapter).inc(m.completion_tokens)

    def scrape(self) -> bytes:
        return generate_latest(self.registry)


class SafetyCounters:
    """A Prometheus collector over app/service.py's own counts: answers the output guard stopped,
    by category, and attempts to override the system prompt the input guard saw."""

    def __init__(self, service):
        self.service = service

    def collect(self):
        blocked = CounterMetricFamily(
            "phi4mm_guard_blocked", "Answers the output guard stopped, by category", labels=["category"]
        )
        for category, count in sorted(self.service.blocked_counts.items()):
            blocked.add_metric([category], count)
        yield blocked
        yield CounterMetricFamily(
            "phi4mm_override_attempts",
            "Requests in which the input guard saw an attempt to override the system prompt",
            value=self.service.override_attempts,
        )
