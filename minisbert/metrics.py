"""The server's metrics, for `GET /metrics`: written by prometheus_client in Prometheus' text
format.

    minisbert_requests_total              counter    route, status   HTTP requests answered
    minisbert_request_duration_seconds    histogram  route           request to response
    minisbert_texts_total                 counter    model           texts embedded
    minisbert_tokens_total                counter    model           tokens embedded
    minisbert_texts_dropped_total         counter    model           texts whose client left first
    minisbert_batch_size                  histogram  model           texts per encoder batch
    minisbert_queue_depth                 gauge      model           texts waiting for a batch

Each app has a registry of its own (not prometheus_client's global one), so several apps in
one process (tests start many) count apart. The first four are counted as requests are
answered, the batch sizes as the batchers' threads finish batches (prometheus_client's metrics
are thread-safe); the queue depth and the dropped texts are the batchers' own numbers, read
when /metrics is asked for. prometheus_client also writes a `_created` sample (when the
series started) beside each counter and histogram.

Left out: metrics of the process (memory, CPU; `process_collector` gives them on Linux) and
several processes writing one set of metrics (one process serves all cores).
"""

from __future__ import annotations

from typing import Callable

from .errors import MissingDependencyError

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
    from prometheus_client import generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
except ImportError:
    raise MissingDependencyError("`minisbert serve` needs prometheus_client for its metrics: "
                                 "pip install 'minisbert[serve]'") from None

CONTENT_TYPE = CONTENT_TYPE_LATEST  # the media type of what `render` writes
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)  # seconds
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)  # texts


class _Batchers:
    """A collector of what the batchers count themselves: texts waiting, texts dropped."""

    def __init__(self):
        self.batchers = {}  # model name -> its request_batcher.Batcher

    def _families(self):
        return (GaugeMetricFamily("minisbert_queue_depth",
                                  "Texts waiting for an encoder batch, by model.",
                                  labels=["model"]),
                CounterMetricFamily("minisbert_texts_dropped",
                                    "Texts not encoded because their client disconnected first.",
                                    labels=["model"]))

    def describe(self):
        return self._families()

    def collect(self):
        queued, dropped = self._families()
        for name, batcher in self.batchers.items():
            queued.add_metric([name], batcher.queued)
            dropped.add_metric([name], batcher.dropped)
        return [queued, dropped]


class Metrics:
    """One app's metrics: call `request`, `embedded` and `batch_observer` as things happen,
    `watch` once the batchers exist, `render` for /metrics."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("minisbert_requests_total",
                                "HTTP requests answered, by route and status.",
                                ["route", "status"], registry=self.registry)
        self.duration = Histogram("minisbert_request_duration_seconds",
                                  "Time from request to response, by route.", ["route"],
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        self.texts = Counter("minisbert_texts_total", "Texts embedded, by model.", ["model"],
                             registry=self.registry)
        self.tokens = Counter("minisbert_tokens_total",
                              "Tokens embedded (prompt and special tokens included), by model.",
                              ["model"], registry=self.registry)
        self.batch_size = Histogram("minisbert_batch_size", "Texts per encoder batch, by model.",
                                    ["model"], buckets=BATCH_BUCKETS, registry=self.registry)
        self._batchers = _Batchers()
        self.registry.register(self._batchers)

    def request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        self.duration.labels(route=route).observe(seconds)

    def embedded(self, model: str, texts: int, tokens: int) -> None:
        self.texts.labels(model=model).inc(texts)
        self.tokens.labels(model=model).inc(tokens)

    def batch_observer(self, model: str) -> Callable[[int, int], None]:
        """The batcher's on_batch callback for `model`: records each batch's size."""
        child = self.batch_size.labels(model=model)
        return lambda texts, padded_tokens: child.observe(texts)

    def watch(self, batchers: dict) -> None:
        """Report these batchers' queue depth and dropped texts (model name -> Batcher)."""
        self._batchers.batchers = dict(batchers)

    def render(self) -> bytes:
        return generate_latest(self.registry)
