"""The multisine excitation program (firmware/programs.py): its spectrum is the band it claims, the joints'
frequency sets interleave, and the real MicroPython VM runs it allocation-free with the host's very pulses.
(Determinism, limits and the small-int bound of every program: tests/test_firmware_units.py's CASES.)"""
import json
from pathlib import Path

import numpy as np
import pytest

from polyniod_firmware import programs
from tests.mpvm import run_micropython

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
JOINTS = json.loads((FIRMWARE.parent / "hardware" / "gen0.json").read_text())["joints"]
RATE = 100


def spectrum(col):
    """|FFT| per Hz of a pulse column (its mean removed) at RATE."""
    x = np.asarray(col, dtype=float)
    return np.fft.rfftfreq(len(x), 1 / RATE), np.abs(np.fft.rfft(x - x.mean())) * 2 / len(x)


@pytest.mark.parametrize("tilt", [0, 1])
def test_multisine_spectrum_is_the_claimed_band_with_interleaved_joint_sets(tilt):
    # 20 s: every frequency of this grid (multiples of 100 mHz) falls on an FFT bin
    p = programs.resolve("multisine", {"f0_mhz": 200, "f1_mhz": 5100, "n": 4, "tilt": tilt, "duration_ms": 20000}, 2)
    pulses = np.array(programs.pulses(p, JOINTS, RATE))
    sets = [programs.multisine_mhz(200, 5100, 4, r, 2) for r in range(2)]
    assert sets == [[200, 1600, 3000, 4400], [900, 2300, 3700, 5100]]  # disjoint, together an even grid
    for j, fs in enumerate(sets):
        f, a = spectrum(pulses[:, j])
        peaks = [a[np.argmin(abs(f - m / 1000))] for m in fs]
        others = np.ones(len(f), bool)
        for m in fs:
            others[np.abs(f - m / 1000) < 0.1] = False
        assert max(a[others]) < 0.05 * min(peaks)  # the power is where it claims, nowhere else
        assert 0.9 * 400 <= sum(peaks) <= 401  # the components' amplitudes sum to amp_us (sin_q14: within 0.1 %)
        speeds = np.array(peaks) * np.array(fs)
        if tilt:  # amplitude ~ 1/f: every component the same peak speed
            assert speeds.max() / speeds.min() < 1.1
        else:
            assert max(peaks) / min(peaks) < 1.05
        centre = JOINTS[j]["center_us"]
        assert centre - 400 <= pulses[:, j].min() and pulses[:, j].max() <= centre + 400


def test_multisine_one_joint_and_seeded_phases():
    p = programs.resolve("multisine", {"joints": "1", "n": 3, "duration_ms": 3000}, 2)
    assert programs.multisine_mhz(200, 5000, 3, 0, 1) == [200, 2600, 5000]  # one joint: the whole grid
    pulses = programs.pulses(p, JOINTS, RATE)
    assert {t[0] for t in pulses} == {JOINTS[0]["center_us"]}
    assert pulses == programs.pulses(p, JOINTS, RATE)
    assert pulses != programs.pulses(dict(p, seed=2), JOINTS, RATE)


@pytest.mark.parametrize("given,says", [
    ({"n": "0"}, "n must be 1..16"),
    ({"f0_mhz": "0"}, "1 <= f0_mhz <= f1_mhz"),
    ({"f0_mhz": "3000", "f1_mhz": "2000"}, "1 <= f0_mhz <= f1_mhz"),
    ({"tilt": "2"}, "tilt must be 0"),
])
def test_multisine_bad_parameters_say_what_is_wrong(given, says):
    with pytest.raises(ValueError, match=says):
        programs.resolve("multisine", given, 2)


def test_multisine_on_the_vm_gives_the_host_pulses_and_allocates_nothing():
    cases = [{"seed": 7, "duration_ms": 3000, "f0_mhz": 200, "f1_mhz": 5000},
             {"seed": 3, "duration_ms": 2000, "n": 16, "tilt": 0, "amp_us": 2000, "f1_mhz": 20000}]
    script = (
        "import gc, json, programs\n"
        "J = json.loads(%r)\n"
        "out = []\n"
        "for given in json.loads(%r):\n"
        "    p = programs.resolve('multisine', given, len(J))\n"
        "    pulses = programs.pulses(p, J, %d)\n"
        "    n, gens = programs.build(p, J, %d)\n"
        "    used = []\n"
        "    for _ in range(2):  # the first pass warms the loop up (the VM's own first-run allocations)\n"
        "        gc.collect()\n"
        "        gc.disable()\n"
        "        a = gc.mem_alloc()\n"
        "        for _ in range(n):\n"
        "            for g in gens:\n"
        "                g.step()\n"
        "        used.append(gc.mem_alloc() - a)\n"
        "        gc.enable()\n"
        "    out.append([p, pulses, used[1]])\n"
        "print(json.dumps(out))\n" % (json.dumps(JOINTS), json.dumps(cases), RATE, RATE)
    )
    on_vm = json.loads(run_micropython(script, sys_path=[FIRMWARE]))
    for given, (p_vm, pulses_vm, allocated) in zip(cases, on_vm):
        p = programs.resolve("multisine", given, len(JOINTS))
        assert p == p_vm and allocated == 0
        assert [list(t) for t in programs.pulses(p, JOINTS, RATE)] == pulses_vm
