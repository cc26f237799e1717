"""A simulated CUDA runtime and TensorRT runtime for the backend's execution logic on machines
without a GPU.

The simulation keeps CUDA's asynchronous semantics, so a backend that forgets to synchronise,
or enqueues its copies on another stream than its execution, gives wrong results and a wrong
event log: work enqueued on a stream (``cudaMemcpyAsync``, ``execute_async_v3``) runs only when
*that* stream is synchronised, freshly allocated pinned memory holds NaNs, and every call is
appended to ``FakeCudart.events`` as ``(event, stream)``. "Device" pointers are host addresses.
The current device is per host thread, as ``cudaSetDevice``'s is: ``FakeCudart.enqueued_on``
records, for each enqueued call, the device current on the thread that enqueued it.

Engine data types are the real lean bindings' ``DataType`` members when those are installed.
"""
from __future__ import annotations

import ctypes
import threading
from types import SimpleNamespace

import numpy as np

try:
    import tensorrt_lean_bindings as lean_trt
except ImportError:  # pragma: no cover - the test extra installs the lean bindings
    lean_trt = None

DATA_TYPES = ("FLOAT", "HALF", "BF16", "FP8", "INT8")  # indices stored in a fake plan
# What a fake engine returns (its head, stored in the plan): tensor name -> TensorRT type, as a
# real engine built from a dlcv-export --argmax graph does (TensorRT's TopK gives INT32 indices).
HEADS = (
    {"logits": None},  # None: the plan's I/O type
    {"labels": "UINT8"},
    {"topk_indices": "INT32", "topk_scores": "FLOAT"},
)
TOPK = 2  # the fake TopK head's k


def data_type(name: str):
    """A TensorRT ``DataType`` member: the lean bindings' own, else a stand-in with its name."""
    return getattr(lean_trt.DataType, name) if lean_trt is not None else SimpleNamespace(name=name)


class FakeCudart:
    """cuda-python's runtime API over host memory, with streams that run their work on synchronisation."""

    cudaStreamNonBlocking = 1
    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)

    def __init__(self, compute_capability=(8, 6), gpus: int = 1):
        self.gpus = gpus
        self.current = threading.local()  # .device: this thread's current device (unset: none chosen)
        self.enqueued_on: list[int | None] = []
        self.blocks: dict[int, ctypes.Array] = {}
        self.mallocs = 0
        self.cc = compute_capability
        self.events: list[tuple[str, int]] = []
        self.queues: dict[int, list] = {}
        self.next_stream = 7

    def enqueue(self, stream, event: str, work) -> None:
        """Record ``event`` on ``stream`` and defer ``work`` until that stream is synchronised."""
        self.events.append((event, int(stream)))
        self.enqueued_on.append(getattr(self.current, "device", None))
        self.queues.setdefault(int(stream), []).append(work)

    def _alloc(self, n, fill: int = 0):
        buf = ctypes.create_string_buffer(bytes([fill]) * int(n), int(n))
        self.blocks[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    def cudaGetDeviceCount(self):
        return 0, self.gpus

    def cudaSetDevice(self, index):
        self.current.device = int(index)
        return (0,)

    def cudaGetDeviceProperties(self, index):
        return 0, SimpleNamespace(name=b"Fake GPU\0\0\0", major=self.cc[0], minor=self.cc[1], totalGlobalMem=1 << 30)

    def cudaGetErrorName(self, err):
        return 0, b"cudaErrorFake"

    def cudaGetErrorString(self, err):
        return 0, b"fake error"

    def cudaDriverGetVersion(self):
        return 0, 13000

    def cudaRuntimeGetVersion(self):
        return 0, 13000

    def cudaStreamCreateWithFlags(self, flags):
        stream, self.next_stream = self.next_stream, self.next_stream + 1
        self.queues[stream] = []
        self.events.append(("create-stream", stream))
        return 0, stream

    def cudaStreamSynchronize(self, stream):
        work, self.queues[int(stream)] = self.queues.get(int(stream), []), []
        for run in work:
            run()
        self.events.append(("synchronize", int(stream)))
        return (0,)

    def cudaStreamDestroy(self, stream):
        assert not self.queues.pop(int(stream)), "a stream was destroyed with work still enqueued"
        return (0,)

    def cudaMalloc(self, n):
        self.mallocs += 1
        return 0, self._alloc(n)

    def cudaMallocHost(self, n):
        self.mallocs += 1
        return 0, self._alloc(n, fill=0xFF)  # NaNs: a result read before its copy arrives is visibly wrong

    def cudaFree(self, ptr):
        del self.blocks[ptr]
        return (0,)

    cudaFreeHost = cudaFree

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        event = "copy-in" if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice else "copy-out"
        self.enqueue(stream, event, lambda: ctypes.memmove(dst, src, n))
        return (0,)


def fake_logits(x: np.ndarray, num_classes: int, classify: bool = False) -> np.ndarray:
    """What the simulated engine computes: per class, a scaled channel sum (pooled when classifying)."""
    summed = x.sum(axis=(1, 2, 3) if classify else 1)
    return np.stack([summed * (c + 1) - c for c in range(num_classes)], axis=1).astype(np.float32)


def fake_outputs(x: np.ndarray, num_classes: int, classify: bool, head: int) -> dict[str, np.ndarray]:
    """The simulated engine's outputs: logits, or a head's ArgMax labels (uint8) / TopK (int32
    indices, float32 softmax probabilities) of those logits."""
    logits = fake_logits(x, num_classes, classify)
    if head == 0:
        return {"logits": logits}
    if head == 1:
        return {"labels": logits.argmax(axis=1).astype(np.uint8)}
    order = np.argsort(-logits, axis=1, kind="stable")[:, :TOPK]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    return {"topk_indices": order.astype(np.int32), "topk_scores": np.take_along_axis(probs, order, axis=1).astype(np.float32)}


class FakeContext:
    def __init__(self, engine):
        self.engine, self.shapes, self.addresses, self.batches = engine, {}, {}, []
        self.fail_with: str | None = None  # an error execute_async_v3 logs and fails with

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        n, _, h, w = self.shapes["input"]
        if name == "input":
            return self.shapes[name]
        if name == "labels":
            return (n, h, w)
        if name.startswith("topk"):
            return (n, TOPK)
        return (n, self.engine.num_classes) if self.engine.classify else (n, self.engine.num_classes, h, w)

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream):
        assert isinstance(stream, int), "execute_async_v3 takes the stream handle as an int"
        if self.fail_with:
            self.engine.runtime.logger.log(FakeTrt.ILogger.Severity.ERROR, self.fail_with)
            return False
        shape, addresses = self.shapes["input"], dict(self.addresses)

        def run() -> None:  # reads the input and writes the outputs when the stream runs it
            raw = (ctypes.c_byte * (4 * int(np.prod(shape)))).from_address(addresses["input"])
            x = np.frombuffer(raw, np.float32).reshape(shape)
            for name, y in fake_outputs(x, self.engine.num_classes, self.engine.classify, self.engine.head).items():
                y = np.ascontiguousarray(y)
                ctypes.memmove(addresses[name], y.ctypes.data, y.nbytes)

        self.engine.runtime.cudart.enqueue(stream, "execute", run)
        self.batches.append(shape[0])
        return True


class FakeEngine:
    def __init__(self, runtime, profile, num_classes, classify, dtype, head=0):
        self.runtime, self.profile, self.num_classes, self.classify = runtime, profile, num_classes, classify
        self.dtype, self.contexts, self.head = dtype, [], head
        self.names = ("input", *HEADS[head])

    @property
    def num_io_tensors(self):
        return len(self.names)

    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_mode(self, name):
        return FakeTrt.TensorIOMode.INPUT if name == "input" else FakeTrt.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return data_type(HEADS[self.head].get(name) or self.dtype)

    def get_tensor_profile_shape(self, name, index):
        return [self.profile[k] for k in ("min", "opt", "max")]

    @property
    def device_memory_size_v2(self):  # what a context needs for the profile's largest input: 4 floats per input value
        return 4 * 4 * int(np.prod(self.profile["max"]))

    def create_execution_context(self):
        self.contexts.append(FakeContext(self))
        return self.contexts[-1]


class FakeTrt:
    """The lean TensorRT runtime module (no Builder): see :class:`FakeFullTrt` for the full one."""

    __version__ = "10.8.0.43"
    TensorIOMode = SimpleNamespace(INPUT="input-mode", OUTPUT="output-mode")
    engines: list = []
    runtimes: list = []
    cudart: FakeCudart | None = None  # where engines enqueue their work (set by the tests' fixture)

    class ILogger:
        Severity = SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self):
            pass

    class Runtime:
        def __init__(self, logger, library: str | None = None):
            self.logger, self.library, self.cudart = logger, library, FakeTrt.cudart
            self.deserialized: list[bytes] = []
            FakeTrt.runtimes.append(self)

        def load_runtime(self, path):
            return FakeTrt.Runtime(self.logger, library=str(path))

        def deserialize_cuda_engine(self, data):
            self.deserialized.append(bytes(data))
            if not data.startswith(b"FAKEPLAN"):
                self.logger.log(FakeTrt.ILogger.Severity.ERROR, "Serialization assertion magicTagRead == kMAGIC_TAG failed.")
                return None
            if data[35]:  # a plan whose loading logs an error that does not stop it
                self.logger.log(FakeTrt.ILogger.Severity.ERROR, "harmless: a plugin library was not found")
            profile = {k: tuple(v) for k, v in zip(("min", "opt", "max"), np.frombuffer(data[8:32], np.int16).reshape(3, 4).tolist())}
            FakeTrt.engines.append(FakeEngine(self, profile, int(data[32]), bool(data[33]), DATA_TYPES[data[34]], int(data[36])))
            return FakeTrt.engines[-1]


class FakeFullTrt(FakeTrt):
    """The full TensorRT module (it has a Builder)."""

    Builder = object


def fake_plan(profile: dict, num_classes: int = 3, classify: bool = False, dtype: str = "FLOAT", noisy: bool = False,
              head: int = 0) -> bytes:  # fmt: skip
    """A plan the simulated runtime loads: its profile, classes, task, I/O type and head (an index
    of :data:`HEADS`) are in its bytes."""
    dims = np.array([profile[k] for k in ("min", "opt", "max")], np.int16)
    flags = bytes([num_classes, classify, DATA_TYPES.index(dtype), noisy, head])
    return b"FAKEPLAN" + dims.tobytes() + flags + b"weights" * 10
