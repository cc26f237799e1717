"""The default backend follows the measurement: a backend's declared preference (e.g. OpenVINO for
INT8 .onnx files on AMX CPUs) wins over the suffix's default only where that backend is installed,
on its device and on a CPU of the class it was measured on; the committed benchmarks of that class
must measure it faster by MIN_PREFERENCE_SPEEDUP, ``--backend`` overrides it, and dlcv-infer says
which backend ran and why, or that nothing was measured on this CPU's class. The mechanism is
tested with a preference the tests declare, on simulated CPUs; the shipped one (OpenVINO for INT8
on AMX) is tested on its own, against the committed AMX records."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from dlcv.runtime.backends import Preference, backends, choose_backend, get_backend, open_backend, registry, resolve_backend
from dlcv.runtime.backends.base import MIN_PREFERENCE_SPEEDUP
from dlcv.runtime.backends.cpu_records import MEASURED_CPU_CLASSES
from dlcv.runtime.backends.openvino_backend import OpenVINOBackend
from dlcv.runtime.cli import main
from dlcv.runtime.metadata import METADATA_KEY, read_onnx_metadata

from ..conftest import CPU_FLAGS, INT8_ON_OPENVINO, TEST_CPU_CLASS, simulate_cpu, with_openvino_class
from .onnx_fixtures import colour_model, save_image

ROOT = Path(__file__).resolve().parents[2]


def with_precision(path: Path, precision: str) -> Path:
    """The same graph, its metadata saying ``precision`` (a file's precision is what its metadata says)."""
    model = onnx.load(str(path))
    md = read_onnx_metadata(path).with_(precision=precision)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = md.to_json()
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("pref")
    models = {p: with_precision(colour_model(root / f"m.{p}.onnx"), p) for p in ("fp32", "fp16", "int8")}
    images = root / "images"
    rng = np.random.default_rng(0)
    for i in range(3):
        save_image(images / f"im{i}.png", rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8))
    return models, images


@pytest.fixture
def openvino_preferred_not_installed(monkeypatch):
    """The same preference on a machine without OpenVINO: the class is there, its library is not."""

    class AbsentOpenVINO(OpenVINOBackend):
        preferred_for = (INT8_ON_OPENVINO,)

        @classmethod
        def library_version(cls):
            return None

    with_openvino_class(monkeypatch, AbsentOpenVINO)


VNNI = "AVX512-VNNI (VPDPBUSD, 512-bit)"
AVX2 = "AVX2 only (VPMADDUBSW + VPMADDWD, no VNNI)"


def test_without_a_preference_every_onnx_runs_on_onnxruntime(files, tmp_path, monkeypatch):
    simulate_cpu(monkeypatch, tmp_path, CPU_FLAGS["vnni"])  # a class whose records measured no preference
    models, _ = files
    for precision, path in models.items():
        choice = choose_backend(path)
        assert (choice.backend, choice.reason, choice.preference) == (get_backend("onnxruntime"), "suffix", None), precision


def test_on_an_amx_cpu_int8_files_run_on_openvino_by_the_committed_record(files, tmp_path, monkeypatch):
    """The shipped preference (no test double): INT8 on OpenVINO on AMX CPUs only, FP32/FP16 not."""
    simulate_cpu(monkeypatch, tmp_path, CPU_FLAGS["amx"])
    models, _ = files
    choice = choose_backend(models["int8"])
    assert (choice.backend, choice.reason) == (get_backend("openvino"), "preferred")
    assert choice.preference.cpu_class == "AMX-INT8 (tile matrix multiply)"
    said = choice.describe(models["int8"])
    assert "AMX-INT8" in said and "fcn8s-256-cpu-amx/results.json" in said and "--backend onnxruntime" in said
    for precision in ("fp32", "fp16"):
        assert choose_backend(models[precision]).backend is get_backend("onnxruntime"), precision
    simulate_cpu(monkeypatch, tmp_path, CPU_FLAGS["vnni"])
    assert choose_backend(models["int8"]).backend is get_backend("onnxruntime")


def test_a_preferred_backend_is_the_default_for_its_precision(files, openvino_preferred):
    models, _ = files
    choice = choose_backend(models["int8"])
    assert choice.backend is openvino_preferred and choice.reason == "preferred" and choice.preference is INT8_ON_OPENVINO
    for precision in ("fp32", "fp16"):  # no preference for these: the suffix's default
        assert choose_backend(models[precision]) == registry.Choice(get_backend("onnxruntime"), "suffix", cpu_class=TEST_CPU_CLASS)
    with open_backend(models["int8"]) as opened:
        assert opened.name == "openvino"


def test_without_the_preferred_library_the_file_falls_back_to_the_suffix_default(files, openvino_preferred_not_installed,
                                                                                   tmp_path):  # fmt: skip
    models, images = files
    assert choose_backend(models["int8"]).backend.name == "onnxruntime"
    result = CliRunner().invoke(main, [str(images), "--engine", str(models["int8"]), "--out", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 0, result.output
    assert "backend: onnxruntime (the default for .onnx models)" in result.stdout
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["backend"] == "onnxruntime"


def test_the_preference_applies_only_on_its_device_and_to_readable_files(files, tmp_path, openvino_preferred):
    models, _ = files
    assert choose_backend(models["int8"]).reason == "preferred"
    assert resolve_backend(models["int8"], device="cuda").name == "onnxruntime"  # OpenVINO runs on the CPU only
    assert resolve_backend(tmp_path / "missing.onnx").name == "onnxruntime"  # opening it says the file is missing
    assert resolve_backend("triton://localhost:8000/m").name == "triton"


def test_dlcv_infer_says_which_backend_ran_and_why_and_backend_overrides(files, tmp_path, openvino_preferred):
    models, images = files
    ran = CliRunner().invoke(main, [str(images), "--engine", str(models["int8"]), "--out", str(tmp_path / "default"), "-q"])
    assert ran.exit_code == 0, ran.output
    line = next(ln for ln in ran.stdout.splitlines() if ln.startswith("backend: "))
    assert line.startswith(f"backend: openvino (the default for int8 .onnx files on the cpu ({TEST_CPU_CLASS}) where it is installed")
    assert "--backend onnxruntime runs it on onnxruntime" in line and "benchmarks/results/example" in line
    record = json.loads((tmp_path / "default" / "metrics.json").read_text())
    assert record["backend"] == "openvino" and record["backend_choice"] == line[len("backend: "):]

    named = CliRunner().invoke(main, [str(images), "--engine", str(models["int8"]), "--backend", "onnxruntime",
                                      "--out", str(tmp_path / "named"), "-q"])  # fmt: skip
    assert named.exit_code == 0, named.output
    assert "backend: onnxruntime (--backend)" in named.stdout
    assert json.loads((tmp_path / "named" / "metrics.json").read_text())["backend"] == "onnxruntime"
    for name in ("im0.png", "im1.png", "im2.png"):  # the same answers either way
        assert (tmp_path / "named" / name).read_bytes() == (tmp_path / "default" / name).read_bytes()


def _row(backend, batch, ms, *, precision="int8", artifact="m.int8.onnx", device="cpu", cpu_class=TEST_CPU_CLASS):
    return {"backend": backend, "batch_size": batch, "latency_p50_ms": ms, "precision": precision,
            "artifact": artifact, "device": device, "cpu_int8_dot": cpu_class}  # fmt: skip


def test_a_preference_needs_a_clear_win_at_every_batch_size():
    clear = [_row("openvino", 1, 100.0), _row("onnxruntime", 1, 100.0 * MIN_PREFERENCE_SPEEDUP),
             _row("openvino", 2, 150.0), _row("onnxruntime", 2, 300.0)]  # fmt: skip
    assert INT8_ON_OPENVINO.unsupported_by("openvino", clear) is None
    within_noise = [*clear[:2], _row("openvino", 2, 150.0), _row("onnxruntime", 2, 160.0)]
    assert "1.07× onnxruntime at batch 2" in INT8_ON_OPENVINO.unsupported_by("openvino", within_noise)
    beaten = [_row("openvino", 1, 120.0), _row("onnxruntime", 1, 100.0)]
    assert "0.83×" in INT8_ON_OPENVINO.unsupported_by("openvino", beaten)


def test_a_preference_needs_both_backends_on_the_same_file_precision_and_device():
    other_file = [_row("openvino", 1, 50.0), _row("onnxruntime", 1, 100.0, artifact="other.int8.onnx")]
    assert "different files" in INT8_ON_OPENVINO.unsupported_by("openvino", other_file)
    for rows in ([_row("openvino", 1, 50.0)],
                 [_row("openvino", 1, 50.0, precision="fp32"), _row("onnxruntime", 1, 100.0, precision="fp32")],
                 [_row("openvino", 1, 50.0, device="cuda"), _row("onnxruntime", 1, 100.0, device="cuda")],
                 [_row("openvino", 1, None), _row("onnxruntime", 1, 100.0)]):  # fmt: skip
        assert "has no openvino and onnxruntime rows" in INT8_ON_OPENVINO.unsupported_by("openvino", rows)


def test_every_declared_preference_is_what_the_committed_benchmarks_measured():
    """Each preference a backend declares cites a committed dlcv-bench record that supports it, and no
    other committed record of its device contradicts it (a preference holds for every model measured,
    not for the one that suits it). When a re-run measures otherwise this fails: the default follows
    the measurement, so change or drop the preference (as OpenVINO's INT8 preference was dropped: it
    led on the 64² demo model and trailed on the full-size ones)."""
    loaded = {path.relative_to(ROOT).as_posix(): json.loads(path.read_text())
              for path in sorted((ROOT / "benchmarks" / "results").glob("*/results.json"))}  # fmt: skip
    committed = {path: rows for path, rows in loaded.items() if isinstance(rows, list)}  # dlcv-bench's; studies write dicts
    assert len(committed) >= 4
    for cls in backends().values():
        for p in cls.preferred_for:
            assert p.record in committed, f"{cls.__name__}.preferred_for cites {p.record}, which is not committed"
            assert p.unsupported_by(cls.name, committed[p.record]) is None, f"{cls.__name__}.preferred_for: change or remove it"
            for record, rows in committed.items():
                why = p.unsupported_by(cls.name, rows)
                assert why is None or "has no" in why, f"{cls.__name__}.preferred_for is contradicted: {why}"


# --- choices by CPU instruction-set class (synthetic record sets, simulated CPUs) ---


def test_a_preference_holds_only_on_the_cpu_class_it_was_measured_on(files, openvino_preferred):
    models, _ = files
    assert choose_backend(models["int8"], cpu_class=TEST_CPU_CLASS).backend is openvino_preferred
    for other in (VNNI, AVX2):
        choice = choose_backend(models["int8"], cpu_class=other)
        assert (choice.backend.name, choice.reason, choice.cpu_class) == ("onnxruntime", "suffix", other)


def test_the_summary_says_whether_this_cpus_class_was_measured(files):
    models, _ = files
    measured = choose_backend(models["int8"], cpu_class=VNNI).describe(models["int8"])
    assert measured.startswith("onnxruntime (the default for .onnx models); the committed benchmarks of this CPU's class, "
                               f"{VNNI}, measured no backend 1.10× faster")  # fmt: skip
    unmeasured = choose_backend(models["int8"], cpu_class=AVX2).describe(models["int8"])
    assert unmeasured.startswith(f"onnxruntime (the default for .onnx models); no committed benchmark was measured on "
                                 f"this CPU's class, {AVX2}")  # fmt: skip
    assert choose_backend(models["int8"], device="cuda").describe(models["int8"]) == "onnxruntime (the default for .onnx models)"


@pytest.mark.parametrize("cpu, backend, says", [
    ("amx", "openvino", f"on the cpu ({TEST_CPU_CLASS}) where it is installed: a test's preference"),
    ("vnni", "onnxruntime", f"the committed benchmarks of this CPU's class, {VNNI}, measured no backend"),
    ("avx2", "onnxruntime", f"no committed benchmark was measured on this CPU's class, {AVX2}"),
])  # fmt: skip
def test_dlcv_infer_reads_the_running_cpus_class(files, tmp_path, monkeypatch, openvino_preferred, cpu, backend, says):
    models, images = files
    simulate_cpu(monkeypatch, tmp_path, CPU_FLAGS[cpu])
    ran = CliRunner().invoke(main, [str(images), "--engine", str(models["int8"]), "--out", str(tmp_path / "o"), "-q"])
    assert ran.exit_code == 0, ran.output
    line = next(ln for ln in ran.stdout.splitlines() if ln.startswith("backend: "))
    assert line.startswith(f"backend: {backend} (") and says in line, line
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["backend"] == backend


def test_records_of_another_cpu_class_neither_support_nor_contradict_a_preference():
    amx_win = [_row("openvino", 1, 50.0), _row("onnxruntime", 1, 100.0)]
    vnni_loss = [_row("openvino", 1, 120.0, cpu_class=VNNI), _row("onnxruntime", 1, 100.0, cpu_class=VNNI)]
    assert INT8_ON_OPENVINO.unsupported_by("openvino", amx_win + vnni_loss) is None
    assert "has no openvino and onnxruntime rows" in INT8_ON_OPENVINO.unsupported_by("openvino", vnni_loss)
    amx_loss = [_row("openvino", 2, 120.0), _row("onnxruntime", 2, 100.0)]
    assert "0.83× onnxruntime at batch 2" in INT8_ON_OPENVINO.unsupported_by("openvino", amx_win + amx_loss)


def test_a_cpu_preference_names_its_class():
    with pytest.raises(ValueError, match="names the CPU class"):
        Preference("int8", "cpu", over="onnxruntime", record="r.json", summary="s")
    gpu = Preference("fp16", "cuda", over="onnxruntime", record="r.json", summary="s")
    assert gpu.applies("fp16", "cuda", None) and gpu.applies("fp16", "cuda", VNNI)


def test_the_measured_cpu_classes_are_those_of_the_committed_records():
    """MEASURED_CPU_CLASSES (what the summary says was measured) lists exactly the classes and
    records of the committed CPU benchmarks, and each CPU preference's class has records."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "benchmarks" / "results").glob("*/results.json")):
        rows = json.loads(path.read_text())
        for r in rows if isinstance(rows, list) else ():
            if r.get("device") == "cpu" and r.get("cpu_int8_dot"):
                found.setdefault(r["cpu_int8_dot"], set()).add(path.relative_to(ROOT).as_posix())
    assert found and {c: set(records) for c, records in MEASURED_CPU_CLASSES.items()} == found
    for cls in backends().values():
        for p in cls.preferred_for:
            assert p.device != "cpu" or p.record in MEASURED_CPU_CLASSES.get(p.cpu_class, ()), p
