"""The one registry of backends, built from the classes' own identity (docs/architecture.md contract 4).

Backends are registered as entry points of the group ``dlcv.backends`` (setup.cfg), so a
package that brings a backend registers it itself: the runtime never names the torch
backend, which lives in ``dlcv.train``. Loading an entry point imports only the backend's
module, which must not import its engine library at module level (see
:class:`~dlcv.runtime.backends.base.Backend`): reading the registry loads no engine.

``open_backend(path)`` picks the backend by the file's suffix (or URL scheme) unless
``backend=NAME`` chooses one, or a measured preference (:class:`~.base.Preference`, declared
by the backend class and re-checked by a test against the committed benchmark it cites, for
files of one precision on CPUs of one instruction-set class) names another installed backend for
the file's precision on the running CPU's class (:mod:`dlcv.runtime.cpu_isa`; :func:`choose_backend`
says which and why, and when nothing was measured on that class); the device is checked against
what that backend declares. One is declared today: INT8 ``.onnx`` files on an AMX CPU open on
OpenVINO (:class:`~.openvino_backend.OpenVINOBackend`); every other ``.onnx`` opens on onnxruntime
unless ``backend="openvino"`` is asked for.
Errors are one line: an unknown name lists the registered ones, a backend that does not open
that kind of file says which kinds it opens, a missing library names the extra to install.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from ..cpu_isa import running_cpu_class
from ..errors import DlcvError, DlcvUsageError, MissingDependencyError, first_line, unknown_choice
from .base import MIN_PREFERENCE_SPEEDUP, Backend, Preference
from .cpu_records import MEASURED_CPU_CLASSES

ENTRY_POINT_GROUP = "dlcv.backends"


@dataclass(frozen=True)
class _Registry:
    classes: dict[str, type[Backend]]  # by name, in priority order
    broken: dict[str, str] = field(default_factory=dict)  # name -> why its entry point cannot load


@functools.lru_cache(maxsize=1)
def _registry() -> _Registry:
    classes: dict[str, type[Backend]] = {}
    broken: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except ImportError as exc:  # the package that registered it is broken or half-installed:
            # only a request for this backend fails, not every other backend
            broken[ep.name] = (
                f"the backend {ep.name!r} ({ep.value}) cannot be imported ({first_line(exc)}); "
                "reinstall the package that provides it"
            )
            continue
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise DlcvError(f"entry point {ep.name} = {ep.value} is not a dlcv Backend class")
        if cls.name != ep.name:
            raise DlcvError(f"entry point {ep.name!r} names the backend {cls.name!r}; the two must match")
        if ep.name in classes and classes[ep.name] is not cls:
            raise DlcvError(f"two backends are registered as {ep.name!r}: {classes[ep.name].__module__} and {cls.__module__}")
        classes[ep.name] = cls
    if not classes:
        raise MissingDependencyError(
            f"no dlcv backends are registered (entry point group {ENTRY_POINT_GROUP!r}); install dlcv with pip "
            "(pip install -e . in a source tree) so its entry points exist"
        )
    ordered = dict(sorted(classes.items(), key=lambda kv: (kv[1].priority, kv[0])))
    return _Registry(ordered, broken)


def backends() -> dict[str, type[Backend]]:
    """Every registered backend class by name, in priority order."""
    return dict(_registry().classes)


def backend_names() -> tuple[str, ...]:
    return tuple(_registry().classes)


def get_backend(name: str) -> type[Backend]:
    """The class registered as ``name``; an unknown name is answered with the known ones."""
    registry = _registry()
    if name in registry.classes:
        return registry.classes[name]
    if name in registry.broken:
        raise MissingDependencyError(registry.broken[name])
    raise DlcvUsageError(unknown_choice("backend", name, registry.classes))


def all_devices() -> tuple[str, ...]:
    """The union of the devices the backends declare (for ``--device`` choices), in first-seen order."""
    return tuple(dict.fromkeys(d for cls in _registry().classes.values() for d in cls.devices))


def parse_device(text: str) -> str:
    """``text`` as a device the backends declare (:func:`all_devices`), lower-cased: ``cpu``, or a
    GPU device with an optional index (``cuda:1``, ``tensorrt:0``). A usage error otherwise."""
    device = str(text).strip().lower()
    base, _, index = device.partition(":")
    devices = all_devices()
    if base not in devices or (_ and (base == "cpu" or not index.isdigit())):
        gpus = [d for d in devices if d != "cpu"]
        raise DlcvUsageError(f"--device {text!r}: use {' or '.join(['cpu', *(f'{d}[:N]' for d in gpus)])}")
    return device


def scheme_of(target: str | Path) -> str | None:
    """``triton`` for ``triton://host:8000/model``; None for a file path."""
    text = str(target)
    return text.split("://", 1)[0].lower() if "://" in text else None


def _kind(target: str | Path) -> str:
    """What a backend must claim to open ``target``: ``triton://`` or the file suffix."""
    scheme = scheme_of(target)
    return f"{scheme}://" if scheme is not None else Path(target).suffix.lower()


def _kinds(cls: type[Backend]) -> tuple[str, ...]:
    return (*cls.suffixes, *(f"{s}://" for s in cls.schemes))


def opens(cls: type[Backend], target: str | Path) -> bool:
    """True when ``cls`` opens this kind of model (its URL scheme or file suffix)."""
    return _kind(target) in _kinds(cls)


def backends_for(target: str | Path) -> list[type[Backend]]:
    """The backends that open ``target`` (by URL scheme or file suffix), the default first."""
    return [c for c in _registry().classes.values() if opens(c, target)]


def deployed_suffixes() -> tuple[str, ...]:
    """The suffixes of deployed models (what dlcv-export writes), not of PyTorch checkpoints."""
    return tuple(sorted({s for c in _registry().classes.values() if c.deployed for s in c.suffixes}))


def check_device(cls: type[Backend], device: str) -> None:
    """A usage error when ``device`` is not one ``cls`` runs on (``cuda:N`` counts as ``cuda``)."""
    base = device.split(":", 1)[0].lower()
    if base not in cls.devices:
        raise DlcvUsageError(f"--device {device} is not a device of the {cls.name} backend; it runs on {', '.join(cls.devices)}")


@dataclass(frozen=True)
class Choice:
    """The backend a model runs on, and why: ``named`` (``--backend``), ``suffix`` (the suffix's
    or scheme's default), ``preferred`` (a measured :class:`~.base.Preference`, in ``preference``)
    or ``precision`` (the backend that runs the ``--precision`` asked for). ``cpu_class``: the
    running CPU's class where the choice depended on it (a CPU file with several backends)."""

    backend: type[Backend]
    reason: str
    preference: Preference | None = None
    cpu_class: str | None = None
    precision: str | None = None

    def describe(self, target: str | Path) -> str:
        """One line for dlcv-infer's summary: which backend, and why."""
        kind = _kind(target) or "model"
        if self.reason == "named":
            return f"{self.backend.name} (--backend)"
        if self.reason == "precision":
            return f"{self.backend.name} (it runs {kind} models in {self.precision}; --precision {self.precision})"
        if self.reason == "suffix":
            return f"{self.backend.name} (the default for {kind} models){self._class_note()}"
        p = self.preference
        assert p is not None
        return (f"{self.backend.name} (the default for {p.precision} {kind} files on {p.where()} where it is installed: "
                f"{p.summary}; {p.record}; --backend {p.over} runs it on {p.over})")  # fmt: skip

    def _class_note(self) -> str:
        """Whether the suffix's default on this CPU class is measured or merely the default."""
        if self.cpu_class is None:
            return ""
        records = MEASURED_CPU_CLASSES.get(self.cpu_class)
        if not records:
            return (f"; no committed benchmark was measured on this CPU's class, {self.cpu_class}: "
                    "dlcv-bench on this machine measures its backends")  # fmt: skip
        return (f"; the committed benchmarks of this CPU's class, {self.cpu_class}, measured no backend "
                f"{MIN_PREFERENCE_SPEEDUP:.2f}× faster for this precision ({len(records)} records)")  # fmt: skip


def _installed(cls: type[Backend]) -> bool:
    try:
        return cls.library_version() is not None
    except Exception:  # a library that imports but cannot say its version is not usable either
        return False


def _preferred(found: list[type[Backend]], target: str | Path, device: str, cpu_class: str | None) -> Choice | None:
    """The first backend (in priority order) whose preference matches this file's precision,
    ``device`` and the CPU's class, and which is installed; None when none does (or the file
    cannot be read: opening it then says why)."""
    base = device.split(":", 1)[0].lower()
    candidates = [c for c in found if any(p.device == base for p in c.preferred_for) and base in c.devices]
    if not candidates or scheme_of(target) is not None:
        return None
    try:
        metadata = next((m for m in (c.read_metadata(Path(target)) for c in candidates) if m is not None), None)
    except DlcvError:
        return None
    if metadata is None:
        return None
    for cls in candidates:
        for p in cls.preferred_for:
            if p.applies(metadata.precision, base, cpu_class) and _installed(cls):
                return Choice(cls, "preferred", p, cpu_class)
    return None


def _for_precision(target: str | Path, backend: str | None, device: str, precision: str) -> Choice:
    """The backend that runs ``target`` in ``precision`` (:attr:`Backend.run_precisions`): the one
    named, which must run it, else the first installed one that opens the file on ``device``."""
    base = device.split(":", 1)[0].lower()
    found = [c for c in backends_for(target) if precision in c.run_precisions]
    if backend is not None:
        cls = get_backend(backend)
        if cls not in found:
            others = ", ".join(c.name for c in found) or "none"
            raise DlcvUsageError(f"--precision {precision}: the {cls.name} backend does not run {_kind(target) or 'these'} "
                                 f"models in {precision}; backends that do: {others}")  # fmt: skip
        return Choice(cls, "named", precision=precision)
    usable = [c for c in found if base in c.devices]
    ready = [c for c in usable if _installed(c)]
    if ready:
        return Choice(ready[0], "precision", precision=precision)
    if usable:  # opening it names the extra to install
        return Choice(usable[0], "precision", precision=precision)
    raise DlcvUsageError(f"--precision {precision}: no backend runs {_kind(target) or 'these'} models in {precision} "
                         f"on the {base}")  # fmt: skip


def choose_backend(target: str | Path, backend: str | None = None, device: str = "cpu", *,
                   precision: str | None = None, cpu_class: str | None = None) -> Choice:
    """The backend for ``target`` and why: with ``precision`` (a run precision such as ``bf16``,
    not the file's own) the backend that runs it; else ``backend`` when named (it must claim the
    suffix or scheme); else a backend that a measurement prefers for this file's precision on
    ``device`` and, on the CPU, on this CPU's class (:attr:`Backend.preferred_for`), when it is
    installed; else the default for the suffix or scheme. Never a preferred backend that is not
    installed: the suffix's default then. ``cpu_class``: the CPU's class (default: the running
    CPU's, :func:`dlcv.runtime.cpu_isa.running_cpu_class`)."""
    if precision is not None:
        return _for_precision(target, backend, device, precision)
    if backend is not None:
        cls = get_backend(backend)
        if not opens(cls, target):
            kind = _kind(target) or "(no suffix)"
            raise DlcvUsageError(
                f"{target}: the {cls.name} backend does not open {kind} models; it opens {', '.join(_kinds(cls))}"
            )
        return Choice(cls, "named")
    found = backends_for(target)
    if not found:
        known = sorted({k for c in _registry().classes.values() for k in _kinds(c)})
        kind = _kind(target) or "(no suffix)"
        raise DlcvError(f"{target}: unknown model file type {kind!r}; expected one of {', '.join(known)}")
    base = device.split(":", 1)[0].lower()
    on_cpu = [c for c in found if base == "cpu" and base in c.devices]
    if len(on_cpu) > 1 and scheme_of(target) is None:  # a choice between CPU backends: the CPU's class decides
        cpu_class = cpu_class or running_cpu_class()
    else:
        cpu_class = None
    return _preferred(found, target, device, cpu_class) or Choice(found[0], "suffix", cpu_class=cpu_class)


def resolve_backend(target: str | Path, backend: str | None = None, device: str = "cpu") -> type[Backend]:
    """The backend class :func:`choose_backend` picks."""
    return choose_backend(target, backend, device).backend


def open_backend(target: str | Path, device: str = "cpu", *, backend: str | None = None, **options) -> Backend:
    """Open a model file (or URL) with ``backend``, or the default :func:`choose_backend` picks
    (for the ``precision`` option, when given, the backend that runs it)."""
    cls = choose_backend(target, backend, device, precision=options.get("precision")).backend
    if not cls.needs_gpu:
        check_device(cls, device)
    path = target if scheme_of(target) is not None else Path(target)
    return cls(path, device=device, **options)
