"""``RunLogger``: an MLflow logger that a dying tracking server cannot stop, and that tells the truth about a run.

Lightning's ``MLFlowLogger`` sends every metric from the training loop, so a server that stops answering
freezes training in the client's retries (about 4 minutes a call) and finally crashes it. Here:

- metrics go to a queue that a background thread sends in batches; while the server is down the queue
  keeps them (up to ``max_buffered`` points, the oldest dropped past that, with a count) and retries with
  back-off, and training never waits. When the server answers again the backlog is sent in step order;
- at the end the backlog gets ``flush_timeout`` seconds (20), the run state 10 more; what is still unsent is written to
  ``<output_dir>/unlogged_metrics.jsonl`` (named in a warning), never silently lost;
- artifacts and tags (:func:`guarded`) are skipped with a warning while the server is known to be down;
- the run's terminal state is set by the run itself (:meth:`finish`): FINISHED only when everything
  finished, KILLED after SIGTERM / Ctrl-C, FAILED after an error. Lightning's own ``finalize`` calls,
  which come after every ``validate``/``fit``/``test``, only flush while the run is :meth:`held_open`;
- a resumed run (:meth:`resume`) is set RUNNING again, tagged with its resume count and step, and skips
  the points it logged before the interruption, so no step appears twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)

# MLflow's client retries a refused request 7 times with back-off (about 4 minutes); the queue retries
# on its own, so each attempt is kept short unless the user set these.
CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
STATUSES = {"success": "FINISHED", "finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


class RunLogger(MLFlowLogger):
    """``MLFlowLogger`` with a non-blocking metric queue, honest run states and duplicate-free resumes.

    output_dir: where unsent metrics are written at the end; flush_timeout: seconds the end of a run
    waits for the backlog; max_buffered: points kept while the server is down; retry_max_s: the longest
    wait between two attempts.
    """

    def __init__(self, *args: Any, output_dir: str | Path | None = None, flush_timeout: float = 20.0,
                 max_buffered: int = 200_000, retry_max_s: float = 15.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.flush_timeout, self.max_buffered, self.retry_max_s = flush_timeout, max_buffered, retry_max_s
        self._hold = 0
        self._skip: dict[str, int] = {}  # resume: the last step already logged per metric
        self._init_queue()

    def _init_queue(self) -> None:
        self._queue: deque = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._down_since: float | None = None
        self._dropped = 0
        self._finished = False

    # pickling (ddp_spawn sends the logger to its workers): threads and locks are made anew there
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_queue", "_lock", "_wake", "_idle", "_thread"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_queue()

    @property
    def tracking_down(self) -> bool:
        """Whether the last attempt to reach the server failed."""
        return self._down_since is not None

    # -- metrics -----------------------------------------------------------------------------------------
    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        stamp, step = int(time.time() * 1000), int(step or 0)
        points = [Metric(key=k, value=float(v), timestamp=stamp, step=step) for k, v in metrics.items()
                  if not isinstance(v, str) and step > self._skip.get(k, -1)]
        if not points:
            return
        with self._lock:
            self._queue.extend(points)
            overflow = len(self._queue) - self.max_buffered
            for _ in range(max(0, overflow)):
                self._queue.popleft()
            self._dropped += max(0, overflow)
            self._idle.clear()
        if overflow > 0:
            log.warning("tracking: %d metric points dropped (more than %d waiting for the server)", self._dropped,
                        self.max_buffered)
        self._start_sender()
        self._wake.set()

    def _start_sender(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._send_loop, name="mlflow-metrics", daemon=True)
            self._thread.start()

    def _send_loop(self) -> None:
        delay = 1.0
        while True:
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            while True:
                with self._lock:
                    batch = [self._queue[i] for i in range(min(1000, len(self._queue)))]
                if not batch:
                    self._idle.set()
                    break
                try:
                    self.experiment.log_batch(run_id=self.run_id, metrics=batch)
                except Exception as err:  # the server is down or refuses: keep the points, retry later
                    self._mark_down(err)
                    time.sleep(delay)
                    delay = min(self.retry_max_s, delay * 2)
                    continue
                with self._lock:
                    for _ in range(min(len(batch), len(self._queue))):  # the end of a run may have emptied it
                        self._queue.popleft()
                self._mark_up()
                delay = 1.0
            if self._finished:
                return

    def _mark_down(self, err: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("tracking: the MLflow server does not answer (%s); training goes on, %d metric points are "
                        "kept and retried", str(err).splitlines()[0][:200], len(self._queue))

    def _mark_up(self) -> None:
        if self._down_since is not None:
            log.warning("tracking: the MLflow server answers again after %.0f s; the backlog is sent",
                        time.monotonic() - self._down_since)
            self._down_since = None

    def flush(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (default ``flush_timeout``) for the queue to empty; ``True`` if it did."""
        if self._thread is None:
            return True
        self._wake.set()
        return self._idle.wait(self.flush_timeout if timeout is None else timeout)

    # -- run state -----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def held_open(self) -> Iterator[RunLogger]:
        """Lightning's ``finalize`` calls inside this block flush but do not end the run; :meth:`finish` does."""
        self._hold += 1
        try:
            yield self
        finally:
            self._hold -= 1

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        if self._hold:
            self.flush()
            return
        self.finish(status)

    @rank_zero_only
    def finish(self, status: str = "success") -> None:
        """Send the backlog (within ``flush_timeout``), write what is left to ``unlogged_metrics.jsonl``, and
        set the run's state: ``success`` FINISHED, ``killed`` KILLED, ``failed`` FAILED."""
        if not self._initialized or self._finished:
            return
        flushed = self.flush()
        self._finished = True
        self._wake.set()
        if not flushed:
            self._write_unsent()
        state = STATUSES.get(status, status)
        if not _within(lambda: self.experiment.set_terminated(self.run_id, state), min(10.0, self.flush_timeout)):
            log.warning("tracking: could not mark MLflow run %s %s (server unreachable); it shows RUNNING until "
                        "resumed", self.run_id, state)

    def _write_unsent(self) -> None:
        with self._lock:
            points = list(self._queue)
            self._queue.clear()
        if not points:
            return
        path = (self.output_dir or Path.cwd()) / "unlogged_metrics.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            for m in points:
                fh.write(json.dumps({"run_id": self.run_id, "key": m.key, "value": m.value, "step": m.step,
                                     "timestamp": m.timestamp}) + "\n")
        log.warning("tracking: the MLflow server did not take %d metric points in time; they are in %s "
                    "(upload them with mlflow's log_batch once it is back)", len(points), path)

    @rank_zero_only
    def resume(self, step: int) -> None:
        """Continue this run from a checkpoint at ``step``: RUNNING again, tagged, and every metric skips the
        steps it already has (those logged between the checkpoint and the interruption)."""
        client, run_id = self.experiment, self.run_id
        run = client.get_run(run_id)
        for key in run.data.metrics:
            history = client.get_metric_history(run_id, key)
            if history:
                self._skip[key] = max(m.step for m in history)
        count = int(run.data.tags.get("resume_count", "0")) + 1
        client.update_run(run_id, status="RUNNING")
        client.set_tag(run_id, "resume_count", str(count))
        client.set_tag(run_id, f"resumed_{count}_from_step", str(step))


def _within(fn: Callable[[], Any], timeout: float) -> bool:
    """Run ``fn`` in a daemon thread; ``True`` if it returned without error within ``timeout`` seconds."""
    done = threading.Event()
    failed: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as err:  # reported below
            failed.append(err)
        finally:
            done.set()

    threading.Thread(target=target, daemon=True).start()
    return done.wait(timeout) and not failed


def apply_client_defaults() -> None:
    """Short MLflow client retries (see :data:`CLIENT_DEFAULTS`) unless the user set them."""
    for key, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(key, value)


def guarded(logger: Any, what: str, fn: Callable[[], Any]) -> bool:
    """Run an artifact or tag upload; while the server is down, or when it fails, warn and go on (``False``)."""
    if getattr(logger, "tracking_down", False):
        log.warning("tracking: %s not uploaded (the MLflow server is down)", what)
        return False
    try:
        fn()
        return True
    except Exception as err:  # a lost upload must not end a run
        if isinstance(logger, RunLogger):
            logger._mark_down(err)
        log.warning("tracking: %s not uploaded (%s)", what, str(err).splitlines()[0][:200])
        return False
