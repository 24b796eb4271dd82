"""Batch queues and batch threads: TF Serving's SharedBatchScheduler and BatchingSession.

A `BatchedSignature` stands in for one signature function of a loaded version. Each call is a
task of `n` rows (the 0th dimension of its inputs); tasks go into the signature's queue, a deque
of batches whose last one is open. A task that does not fit the open batch closes it and opens
the next; with `max_enqueued_batches` batches already waiting it is refused (UNAVAILABLE). The
`BatchScheduler`'s threads, round robin over every queue, take a closed batch, or the open one
once it is full or its oldest task has waited `batch_timeout_micros` (0: at once, so a batch
grows only while the threads are busy). A batch runs the signature once on its tasks' inputs
concatenated along dimension 0, padded up to the next allowed batch size with copies of the
last task's first row, and hands each task its rows of every output.

As TF Serving: a task with no inputs, a 0-dimensional input or inputs of different 0th sizes is
refused (INVALID_ARGUMENT), as is one over `max_batch_size` unless large batches are split
(then it is cut across batches and its outputs joined); with `pad_variable_length_inputs`, inputs
of different shapes are padded to the largest (with each tensor's first element) and outputs are
split along dimension 0 only. One difference: without padding, TF Serving fails a whole batch
when two of its tasks' inputs differ beyond dimension 0; here such a task starts a batch of its
own, so that its answer does not depend on which requests it happened to arrive with.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tfx_serving_ext.protocol.errors import ServingError, from_exception, invalid_argument

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueueOptions:
    """How one signature's queue forms batches (SharedBatchScheduler::QueueOptions + padding)."""

    input_batch_size_limit: int = 1000
    max_execution_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False


class _Rows(np.ndarray):
    """A task's rows of a batched output: a NumPy array that answers `.numpy()` like a tensor."""

    def numpy(self) -> np.ndarray:
        return self.view(np.ndarray)


class _Call:
    """One call of a BatchedSignature, waiting for the parts it was cut into."""

    def __init__(self, parts: int, on_done: Callable[[_Call], None] | None = None):
        self.done = threading.Event()
        self._on_done = on_done
        self.outputs: list[dict | None] = [None] * parts
        self.error: ServingError | None = None
        self._remaining = parts
        self._lock = threading.Lock()

    def finish(self, index: int, outputs: dict | None, error: ServingError | None) -> None:
        with self._lock:
            if error is not None and self.error is None:
                self.error = error
            self.outputs[index] = outputs
            self._remaining -= 1
            if self._remaining == 0:
                self.done.set()
                if self._on_done is not None:
                    try:
                        self._on_done(self)
                    except Exception:  # e.g. its event loop is closed: the batch goes on
                        logger.exception("Could not hand a finished call over")

    def result(self) -> dict:
        self.done.wait()
        if self.error is not None:
            raise self.error
        if len(self.outputs) == 1:
            return self.outputs[0]
        return {
            alias: np.concatenate([np.asarray(part[alias]) for part in self.outputs]).view(_Rows)
            for alias in self.outputs[0]
        }


@dataclass
class _Part:
    call: _Call
    index: int
    inputs: dict
    size: int


class _Batch:
    def __init__(self):
        self.parts: list[_Part] = []
        self.size = 0
        self.key: tuple | None = None
        self.opened_at = 0.0


class BatchScheduler:
    """A pool of batch threads serving every BatchedSignature's queue, round robin."""

    def __init__(self, num_threads: int, name: str = "batch_threads"):
        self._cv = threading.Condition()
        self._queues: list[weakref.ref] = []
        self._next = 0
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}_{i}", daemon=True)
            for i in range(max(1, num_threads))
        ]
        for thread in self._threads:
            thread.start()

    def add_queue(self, function, options: QueueOptions, name: str = "") -> BatchedSignature:
        """Returns `function` wrapped so that concurrent calls run in batches."""
        return BatchedSignature(function, options, self, name)

    def _register(self, queue: BatchedSignature) -> None:
        with self._cv:
            self._queues.append(weakref.ref(queue))

    def _take_batch(self, now: float):
        """Returns (queue, batch) ready to run, or (None, seconds until one may be)."""
        live = [q for q in (ref() for ref in self._queues) if q is not None]
        if len(live) != len(self._queues):
            self._queues = [weakref.ref(q) for q in live]
        wait = None
        for offset in range(len(live)):
            index = (self._next + offset) % len(live)
            queue = live[index]
            batch = queue._take(now)
            if batch is not None:
                self._next = index + 1
                return queue, batch
            deadline = queue._deadline()
            if deadline is not None:
                wait = max(0.0, deadline - now) if wait is None else min(wait, deadline - now)
        return None, wait

    def _serve(self) -> None:
        while True:
            with self._cv:
                while True:
                    if self._stopped:
                        return
                    queue, found = self._take_batch(time.monotonic())
                    if queue is not None:
                        break
                    self._cv.wait(found)
            queue._run(found)
            del queue, found

    def stop(self) -> None:
        """Stops the threads; tasks still queued fail with UNAVAILABLE."""
        with self._cv:
            self._stopped = True
            queues = [q for q in (ref() for ref in self._queues) if q is not None]
            pending = [part for q in queues for batch in q._batches for part in batch.parts]
            for queue in queues:
                queue._batches = deque([_Batch()])
            self._cv.notify_all()
        error = ServingError("UNAVAILABLE", "The model server is shutting down")
        for part in pending:
            part.call.finish(part.index, None, error)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)


class BatchedSignature:
    """A signature function whose concurrent calls run together, as TF Serving's BatchingSession.

    Called like the function it wraps, but with NumPy arrays (`takes_arrays`): a task is sized,
    keyed and merged as arrays, and a batch becomes tensors once, when it runs, so that a request
    pays for no tensor of its own. Output alias -> the caller's rows, with `.numpy()`.
    """

    takes_arrays = True

    def __init__(self, function, options: QueueOptions, scheduler: BatchScheduler, name: str):
        self.function = function
        self.options = options
        self.name = name
        self._scheduler = scheduler
        self._cv = scheduler._cv
        self._batches: deque[_Batch] = deque([_Batch()])
        scheduler._register(self)

    # ---- the caller's side -------------------------------------------------------------------

    def __call__(self, **inputs) -> dict:
        return self.submit(inputs).result()

    def submit(self, inputs: dict, on_done: Callable[[_Call], None] | None = None) -> _Call:
        """Queues a call and returns it at once; `on_done(call)` runs when its result is in.

        `on_done` runs in the thread that finishes the call (a batch thread), so it should
        only hand the call over (e.g. `loop.call_soon_threadsafe`).

        Raises:
            ServingError: INVALID_ARGUMENT for inputs that cannot be batched or a task over
                `input_batch_size_limit`; UNAVAILABLE when the queue is full or stopping.
        """
        inputs = {k: v if isinstance(v, np.ndarray) else np.asarray(v) for k, v in inputs.items()}
        size = _task_size(inputs)
        limit = self.options.input_batch_size_limit
        if size > limit:
            raise invalid_argument(
                f"Task size {size} is larger than maximum input batch size {limit}"
            )
        key = _batch_key(inputs, self.options.pad_variable_length_inputs)
        return self._schedule(inputs, size, key, on_done)

    def _schedule(self, inputs: dict, size: int, key: tuple, on_done) -> _Call:
        options = self.options
        full = options.max_execution_batch_size
        with self._cv:
            if self._scheduler._stopped:
                raise ServingError("UNAVAILABLE", "The model server is shutting down")
            open_batch = self._batches[-1]
            if open_batch.parts and open_batch.key != key:
                self._start_batch_or_refuse(1)
                open_batch = self._batches[-1]
            room = full - open_batch.size
            if size <= room:
                sizes = [size]
            elif not options.enable_large_batch_splitting:
                self._start_batch_or_refuse(1)
                sizes = [size]
            else:
                sizes = [room] if room > 0 else []
                left = size - room if room > 0 else size
                while left > 0:
                    sizes.append(min(left, full))
                    left -= sizes[-1]
                self._start_batch_or_refuse(len(sizes) - (1 if room > 0 else 0), start=False)
            call = _Call(len(sizes), on_done)
            offset = 0
            for index, rows in enumerate(sizes):
                if self._batches[-1].size + rows > full:
                    self._start_batch()
                part_inputs = inputs
                if len(sizes) > 1:
                    part_inputs = {k: v[offset : offset + rows] for k, v in inputs.items()}
                self._add(_Part(call, index, part_inputs, rows), key)
                offset += rows
            self._cv.notify()
        return call

    def _start_batch_or_refuse(self, new_batches: int, start: bool = True) -> None:
        if len(self._batches) + new_batches - 1 >= self.options.max_enqueued_batches:
            raise ServingError(
                "UNAVAILABLE",
                "The batch scheduling queue to which this task was submitted is full "
                f"(max_enqueued_batches {self.options.max_enqueued_batches} of up to "
                f"{self.options.max_execution_batch_size} rows each)",
            )
        if start:
            self._start_batch()

    def _start_batch(self) -> None:
        if self._batches[-1].parts:
            self._batches.append(_Batch())

    def _add(self, part: _Part, key: tuple) -> None:
        batch = self._batches[-1]
        if not batch.parts:
            batch.opened_at, batch.key = time.monotonic(), key
        batch.parts.append(part)
        batch.size += part.size

    # ---- the batch threads' side (under the scheduler's lock) --------------------------------

    def _take(self, now: float) -> _Batch | None:
        if len(self._batches) == 1:
            batch = self._batches[0]
            timeout = self.options.batch_timeout_micros / 1e6
            ready = batch.size >= self.options.max_execution_batch_size or (
                now >= batch.opened_at + timeout
            )
            if not batch.parts or not ready:
                return None
            self._batches.append(_Batch())
        return self._batches.popleft()

    def _deadline(self) -> float | None:
        batch = self._batches[0]
        if not batch.parts:
            return None
        return batch.opened_at + self.options.batch_timeout_micros / 1e6

    # ---- running a batch (a batch thread, outside the lock) ----------------------------------

    def _run(self, batch: _Batch) -> None:
        try:
            outputs = self._run_merged(batch)
        except Exception as exc:
            error = exc if isinstance(exc, ServingError) else from_exception(exc)
            for part in batch.parts:
                part.call.finish(part.index, None, error)
            return
        for part, rows in zip(batch.parts, outputs, strict=True):
            part.call.finish(part.index, rows, None)

    def _run_merged(self, batch: _Batch) -> list[dict]:
        import tensorflow as tf

        parts = batch.parts
        padded = _round_up(self.options.allowed_batch_sizes, batch.size)
        padding = padded - batch.size
        merged = {}
        for alias in parts[0].inputs:
            arrays = [part.inputs[alias] for part in parts]
            if self.options.pad_variable_length_inputs and len(arrays) > 1:
                arrays = _pad_to_largest(arrays)
            if padding:
                arrays.append(np.repeat(arrays[-1][:1], padding, axis=0))
            joined = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
            merged[alias] = tf.convert_to_tensor(joined)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "signature %s: batch of %d tasks, %d rows, padded to %d",
                self.name,
                len(parts),
                batch.size,
                padded,
            )
        outputs = self.function(**merged)
        for tensor in outputs.values():
            if len(tensor.shape) == 0:
                raise ServingError("FAILED_PRECONDITION", "Batched output tensor has 0 dimensions")
            if tensor.shape[0] != padded:
                raise ServingError(
                    "FAILED_PRECONDITION",
                    "Batched output tensor's 0th dimension does not equal the sum of the 0th "
                    "dimension sizes of the input tensors",
                )
        if len(parts) == 1 and not padding:
            return [outputs]
        arrays = {alias: np.asarray(tensor.numpy()) for alias, tensor in outputs.items()}
        results, offset = [], 0
        for part in parts:
            end = offset + part.size
            results.append({alias: a[offset:end].view(_Rows) for alias, a in arrays.items()})
            offset = end
        return results


def _task_size(inputs: dict) -> int:
    """Returns the rows of a call (0th dimension of every input), as ComputeTensorBatchSize."""
    if not inputs:
        raise invalid_argument("Batching Run() must have at least one input tensor")
    sizes = set()
    for array in inputs.values():
        if array.ndim == 0:
            raise invalid_argument("Batching Run() input tensors must have at least one dimension")
        sizes.add(array.shape[0])
    if len(sizes) > 1:
        raise invalid_argument("Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop()


def _batch_key(inputs: dict, pad: bool) -> tuple:
    """Returns what tasks of one batch must share: input names, dtypes, shapes past dim 0."""
    if pad:
        return tuple((k, v.dtype, v.ndim) for k, v in sorted(inputs.items()))
    return tuple((k, v.dtype, v.shape[1:]) for k, v in sorted(inputs.items()))


def _round_up(allowed: tuple[int, ...], size: int) -> int:
    """Returns the smallest allowed batch size >= size (size itself when none are given)."""
    if not allowed:
        return size
    index = bisect.bisect_left(allowed, size)
    return allowed[index] if index < len(allowed) else size


def _pad_to_largest(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Returns the arrays padded past dim 0 to their largest shape, with their first element."""
    rank = arrays[0].ndim
    largest = [max(a.shape[d] for a in arrays) for d in range(rank)]
    padded = []
    for array in arrays:
        missing = [largest[d] - array.shape[d] for d in range(1, rank)]
        if not any(missing):
            padded.append(array)
            continue
        if rank > 6:
            raise invalid_argument("Only tensors with rank from 1 to 6 can be padded.")
        if array.size == 0:
            raise invalid_argument("Got empty tensor in batch of non-empty tensors.")
        # Filled element by element: np.pad would turn a bytes value into np.bytes_ and lose
        # its trailing NUL bytes (a serialized proto can end in one).
        grown = np.empty((array.shape[0], *largest[1:]), dtype=array.dtype)
        grown.fill(array.flat[0])
        grown[tuple(slice(0, n) for n in array.shape)] = array
        padded.append(grown)
    return padded
