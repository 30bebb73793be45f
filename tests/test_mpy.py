"""Firmware as .mpy: every module compiles with mpy-cross for the ESP32's CPU (-march=xtensawin)
and the virtual Gen0's (x64), the viper kernel included; `host flash` installs .mpy by default and
the firmware boots from them with the viper kernel in use.

The firmware compiles its viper kernels (mlp's layer, protocol's CRC, ...) at import from source
text (emit.under), so no .mpy of the firmware carries native code today; each kernel is compiled
here on its own for each target, so that viper code the Xtensa emitter refuses fails in CI, not
on the first board.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from host.errors import UserError
from host.firmware_files import FIRMWARE_DIR, firmware_files
from host.flash import mpy

TARGETS = ["xtensawin", "x64"]
SOURCES = sorted(p for p in FIRMWARE_DIR.glob("*.py") if p.name != "__init__.py")
ESP32_MPY = 10 << 10 | 3 << 8 | 6  # sys.implementation._mpy of MicroPython 1.23+ on an ESP32
VM_MPY = 2 << 10 | 3 << 8 | 6  # the unix VM on x86-64 (the virtual Gen0)

VIPER_TYPE_ERROR = """\
@micropython.viper
def f(x) -> int:
    y = 1
    y = x
    return y
"""
ASM_XTENSA = """\
@micropython.asm_xtensa
def f(a2):
    addi(a2, a2, 1)
"""


def compile_or_fail(src, dest, arch, name=None):
    try:
        return mpy.compile_file(src, dest, arch, name)
    except UserError as e:  # the compiler's own message is the failure
        pytest.fail(str(e), pytrace=False)


# The firmware compiles its viper kernels on the board (emit.under: decorator + source text, exec'd
# at import). Import every module under the real MicroPython VM (a stand-in `machine`), with
# emit.under recording what it is asked to compile: (function name, decorator, source).
RECORD_KERNELS = """
import json, sys
import emit
seen = []
real = emit.under
def under(decorator, source, name, namespace=None):
    seen.append([name, decorator, source])
    return real(decorator, source, name, namespace)
emit.under = under
for m in MODULES:
    __import__(m)
print(json.dumps(seen))
"""


def firmware_kernels():
    """[(module, name, decorator, source)] of every kernel the firmware compiles on the board."""
    import json
    import tempfile

    from tests.mpvm import run_micropython
    from tests.test_firmware_units import BENCH_MACHINE

    names = [p.stem for p in SOURCES if p.stem not in ("boot", "main", "emit", "__init__")]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "machine.py").write_text(BENCH_MACHINE)
        out = run_micropython(RECORD_KERNELS.replace("MODULES", repr(names)), sys_path=[tmp, FIRMWARE_DIR])
    kernels = []
    for name, decorator, source in json.loads(out.strip().splitlines()[-1]):
        first = next(line for line in source.splitlines() if line.startswith("def "))
        owners = [p.stem for p in SOURCES if first in p.read_text()]
        assert len(owners) == 1, f"kernel {name}: {owners} define {first!r}"
        kernels.append(("polyniod_firmware." + owners[0], name, decorator, source))
    users = {p.stem for p in SOURCES if p.stem != "emit" and "emit.under(" in p.read_text()}
    missed = users - {k[0].rsplit(".", 1)[-1] for k in kernels}
    assert not missed, f"{sorted(missed)} call emit.under but no kernel of theirs was seen"
    return kernels


KERNELS = firmware_kernels()


def kernel_file(tmp_path, kernel):
    module, name, decorator, source = kernel
    path = tmp_path / f"{module.rsplit('.', 1)[-1]}_{name}.py"
    path.write_text("import micropython\n" + decorator + "\n" + source)
    return path


def kernel_source():
    """mlp's layer kernel as the board compiles it (a module with native code)."""
    layer = [k for k in KERNELS if k[0].endswith("mlp") and k[1] == "layer"]
    assert layer, KERNELS
    _, _, decorator, source = layer[0]
    return "import micropython\n" + decorator + "\n" + source


def test_firmware_modules_are_found():
    assert {"mlp.py", "protocol.py", "loop.py", "boot.py", "main.py"} <= {p.name for p in SOURCES}


@pytest.mark.parametrize("arch", TARGETS)
@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_every_firmware_module_compiles(src, arch, tmp_path):
    out = compile_or_fail(src, tmp_path / (src.stem + ".mpy"), arch, src.name)
    assert out.read_bytes()[:2] == b"M\x06"


def test_the_firmware_kernels_are_found():
    assert ("polyniod_firmware.mlp", "layer") in [(k[0], k[1]) for k in KERNELS]
    assert all(k[2].startswith("@micropython.") for k in KERNELS)


@pytest.mark.parametrize("arch", TARGETS)
@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: f"{k[0].rsplit('.', 1)[-1]}.{k[1]}")
def test_every_kernel_compiles_to_native_code(kernel, arch, tmp_path):
    """Each kernel the board compiles at import, through this target's emitter (viper/native)."""
    src = kernel_file(tmp_path, kernel)
    out = compile_or_fail(src, src.with_suffix(".mpy"), arch)
    assert mpy.native_header(out) == (mpy.ARCHS.index(arch), mpy.cross_version()[1])  # native code for this CPU


def test_a_refused_viper_function_is_one_line_naming_file_and_reason(tmp_path):
    src = tmp_path / "bad.py"
    src.write_text(VIPER_TYPE_ERROR)
    with pytest.raises(UserError) as e:
        mpy.compile_file(src, tmp_path / "bad.mpy", "xtensawin", "kernel.py")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("mpy-cross -march=xtensawin refused kernel.py: line 4: ViperTypeError"), msg
    # and the test above would report it: its failure is that line
    with pytest.raises(pytest.fail.Exception, match="refused kernel.py: line 4: ViperTypeError"):
        compile_or_fail(src, tmp_path / "bad.mpy", "xtensawin", "kernel.py")


def test_a_syntax_error_is_reported(tmp_path):
    src = tmp_path / "broken.py"
    src.write_text("def f(:\n    pass\n")
    with pytest.raises(UserError, match=r"^mpy-cross -march=x64 refused broken.py: line 1: SyntaxError"):
        mpy.compile_file(src, tmp_path / "broken.mpy", "x64")


def test_march_reaches_the_emitter(tmp_path):
    """Xtensa assembly compiles for the ESP32 only: -march really selects the target."""
    src = tmp_path / "asm.py"
    src.write_text(ASM_XTENSA)
    assert mpy.native_header(mpy.compile_file(src, tmp_path / "a.mpy", "xtensawin"))[0] == mpy.ARCHS.index("xtensawin")
    with pytest.raises(UserError, match="-march=x64 refused asm.py"):
        mpy.compile_file(src, tmp_path / "b.mpy", "x64")


def test_board_arch_from_sys_implementation():
    assert mpy.board_arch(ESP32_MPY) == "xtensawin"
    assert mpy.board_arch(VM_MPY) == "x64"
    assert mpy.board_arch(3 << 8 | 6) is None  # no native emitter: bytecode only
    for field in (15 << 10 | 3 << 8 | 6, 63 << 10 | 6):
        with pytest.raises(UserError) as e:
            mpy.board_arch(field)
        assert "\n" not in str(e.value) and "`host flash --py`" in str(e.value)


@pytest.mark.parametrize("field, arch", [(ESP32_MPY, "xtensawin"), (VM_MPY, "x64")])
def test_compile_all_targets_the_board(field, arch, tmp_path):
    viper = tmp_path / "kernel.py"
    viper.write_text(kernel_source())
    files = firmware_files() + [(viper, "kernel.py")]
    said = []
    out = mpy.compile_all(files, tmp_path, field, say=said.append)
    names = [n for _, n in out]
    assert "boot.py" in names and "main.py" in names and "robot.json" in names
    assert "protocol.mpy" in names and "mlp.mpy" in names and "protocol.py" not in names
    assert mpy.native_header(tmp_path / "kernel.mpy")[0] == mpy.ARCHS.index(arch)
    assert f"-march={arch}" in said[0]


def test_compile_all_versions(tmp_path):
    src = tmp_path / "plain.py"
    src.write_text("X = 1\n")
    viper = tmp_path / "kernel.py"
    viper.write_text(kernel_source())
    major, minor = mpy.cross_version()
    older = ESP32_MPY & ~(3 << 8) | ((minor - 1) & 3) << 8  # same major, another sub-version
    assert [n for _, n in mpy.compile_all([(src, "plain.py")], tmp_path, older)] == ["plain.mpy"]  # bytecode loads
    with pytest.raises(UserError, match="kernel.py has native code"):
        mpy.compile_all([(viper, "kernel.py")], tmp_path, older)
    with pytest.raises(UserError, match=r"loads \.mpy v5\.\d but mpy-cross here emits .*`host flash --py`"):
        mpy.compile_all([(src, "plain.py")], tmp_path, ESP32_MPY & ~0xFF | 5)


# -- end to end on the virtual Gen0 -----------------------------------------------------------------
@pytest.mark.slow
def test_flash_defaults_to_mpy_and_the_viper_kernel_runs(sim):
    from host.deploy import deploy
    from host.export.reference import Reference
    from host.link.client import Link
    from tests.test_deploy import gen0_blob

    proc = subprocess.run([sys.executable, "-m", "host", "flash", "--port", sim.port], capture_output=True, text=True,
                          timeout=240, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "-march=x64" in proc.stdout  # the VM's CPU, from the board's sys.implementation._mpy
    on_flash = {p.name for p in sim.flash_dir.iterdir()}
    for src, name in firmware_files():
        if name in ("boot.py", "main.py") or not name.endswith(".py"):
            assert name in on_flash
        else:
            assert name[:-3] + ".mpy" in on_flash and name not in on_flash, name
    assert not any(n.startswith(".flash_new") for n in on_flash)
    blob = gen0_blob("tanh", seed=3)
    ref = Reference(blob)
    with Link(sim.port) as link:
        hello = link.connect(timeout=5.0)
        assert mpy.board_arch(hello["mpy"]) == "x64"
        summary = deploy(link, blob, ref, checks=300)
        assert summary["emitter"] == "viper"  # mlp.mpy compiled its kernel under the VM's native emitter
        assert summary["parity"]["mismatches"] == 0, summary["parity"]
        timed = link.request_json("mtime", 20, timeout=2.0)
        assert timed["emitter"] == "viper" and timed["n"] == 20
        assert link.request_json("status")["mem_free"] > 0


@pytest.mark.slow
def test_flash_py_replaces_mpy(sim):
    from host.flash.firmware import flash_firmware

    said = []
    assert flash_firmware(sim.port, mpy=True, say=said.append)["fw"]
    assert (sim.flash_dir / "protocol.mpy").exists()
    hello = flash_firmware(sim.port, mpy=False, say=said.append)
    assert hello["fw"] and (sim.flash_dir / "protocol.py").exists()
    assert not any(p.suffix == ".mpy" for p in sim.flash_dir.iterdir())  # no stale .mpy shadows the source
