"""Wiring faults of the virtual Gen0 (`host sim --fault`, host/sim/faults.py): each shows the symptom a
check would see, through the real firmware and link (slow), or at the pins of the board (fast).
"""

import time

import pytest
import serial

from host import cli
from host.link.client import Link
from host.sim import faults as F
from host.sim import registry
from host.sim.board import VirtualBoard

CENTRE = 1450


# -- the board alone (fast) ----------------------------------------------------------------------

def drive(board, moves, seconds, every_us=10000):
    """Run the board for `seconds`: moves = {time s: {pwm pin: pulse us}}; each tick reads both pots.
    Returns [(t s, raw 34, raw 35, truth)] per tick."""
    t, rows, pending = 1000, [], sorted(moves.items())
    for pin in board.pwm_pins:
        board.pwm(t, pin, 50, CENTRE * 1000)
    while t < seconds * 1e6:
        t += every_us
        while pending and pending[0][0] * 1e6 <= t:
            for pin, us in pending.pop(0)[1].items():
                board.pwm(t, pin, 50, us * 1000)
        rows.append((t / 1e6, board.adc_read(t, 34, 3), board.adc_read(t + 40, 35, 3), board.truth()))
    return rows


def test_fault_names_and_joints_are_checked_in_one_line():
    names = ["shoulder", "elbow"]
    assert F.parse(["stuck-joint", "reversed-servo:elbow", "imu-absent", "stuck-joint:shoulder"], names) == (
        F.Fault("stuck-joint", 0, "shoulder"), F.Fault("reversed-servo", 1, "elbow"), F.Fault("imu-absent"))
    for spec, says in (("nope", "unknown fault 'nope'"), ("stuck-joint:knee", "no joint 'knee'"),
                       ("weak-supply:elbow", "takes no joint")):
        with pytest.raises(ValueError) as e:
            F.parse([spec], names)
        assert says in str(e.value) and "\n" not in str(e.value)
        if "joint 'knee'" not in says:
            assert all(name in str(e.value) for name in F.FAULTS)


def test_the_cli_refuses_an_unknown_fault_naming_the_valid_ones(capsys):
    assert cli.main(["sim", "--fault", "swapped-pots", "--fault", "loose-wire"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown fault 'loose-wire'" in err and "pot-clipped[:JOINT]" in err


def test_no_faults_is_the_healthy_board():
    healthy, none = VirtualBoard.from_files(seed=4), VirtualBoard.from_files(seed=4, faults=[])
    moves = {0.1: {25: 1900, 26: 1100}}
    assert [r[:3] for r in drive(healthy, moves, 0.4)] == [r[:3] for r in drive(none, moves, 0.4)]
    assert none.faults == () and none.servo_on == {25: 0, 26: 1} and none.wiper_on == {34: 0, 35: 1}


def test_a_seized_gear_train_stalls_its_motor_at_the_pins():
    rows = drive(VirtualBoard.from_files(seed=1, faults=["stuck-joint"]), {0.2: {25: 1900}}, 0.8)
    before, after = rows[15][3]["joints"][0], rows[-1][3]["joints"][0]
    assert abs(after["gear_deg"] - before["gear_deg"]) < 0.5 and abs(rows[-1][1] - rows[15][1]) < 80
    assert after["current_a"] > 0.45 and after["pulse_us"] == 1900  # stall current, driving on
    assert rows[-1][3]["supply_v"] < 4.4


def test_a_weak_supply_browns_out_only_when_both_servos_start():
    one = VirtualBoard.from_files(seed=2, faults=["weak-supply"])
    drive(one, {0.2: {25: 2200}, 0.6: {26: 700}}, 1.0)
    assert one.brownouts == 0
    both = VirtualBoard.from_files(seed=2, faults=["weak-supply"])
    rows = drive(both, {0.2: {25: 2000, 26: 900}}, 0.5)
    assert both.brownouts == 1 and both.in_reset and both.take_brownout() and not both.take_brownout()
    assert rows[-1][3]["pwm"] == {} and all(j["pulse_us"] is None for j in rows[-1][3]["joints"])  # ESP32 down, limp
    assert all(r[3]["supply_v"] > 4.5 for r in rows[-5:])  # the motors stopped, the rail is back
    both.power_on()
    assert not both.in_reset and both.epoch == both.now


def test_a_floating_pin_leans_to_the_pin_read_before_it():
    rows = drive(VirtualBoard.from_files(seed=3, faults=["pot-disconnected:elbow"]), {0.3: {25: 2100}}, 1.0)
    follows = [abs(r[2] - r[1]) for r in rows[60:]]  # elbow pin vs the shoulder's, read just before it
    assert sum(follows) / len(follows) < 250
    quiet = [r[2] for r in rows[5:28]]
    mean = sum(quiet) / len(quiet)
    assert (sum((x - mean) ** 2 for x in quiet) / len(quiet)) ** 0.5 > 30  # healthy: ~11 LSB


# -- through the firmware and the link (slow) ------------------------------------------------------

def board_with(make_sim, *faults, seed=0):
    return make_sim(preload=True, faults=list(faults), seed=seed)


def hold(link, pulses, seconds):
    """Stream `set pulses` for `seconds` (fresher than the firmware's watchdog); the last telemetry then."""
    while not link.telemetry.empty():
        link.telemetry.get_nowait()
    end = time.monotonic() + seconds
    last = None
    while time.monotonic() < end:
        link.request("set", *pulses)
        step = time.monotonic() + 0.1
        while time.monotonic() < step:
            frame = link.next_telemetry(timeout=0.05)
            last = frame[3] if frame else last
    return last


def repl(port, code, timeout=10):
    """Stop main.py with Ctrl-C, run one line at the REPL; what it printed up to the next prompt."""
    with serial.Serial(port, 115200, timeout=0.1) as ser:
        text = b""
        ser.write(b"\x03\x03")
        end = time.monotonic() + timeout
        while b">>> " not in text and time.monotonic() < end:
            text += ser.read(4096)
        ser.write(code.encode() + b"\r")
        text = b""
        while b">>> " not in text and time.monotonic() < end:
            text += ser.read(4096)
        return text.decode(errors="replace")


def holds(make_sim, fault, *steps):
    """A board with `fault` in direct mode through steps (pulses, seconds): the board, and per step the last
    telemetry and the plant's truth at its end."""
    gen0 = board_with(make_sim, fault)
    seen = []
    with Link(gen0.port) as link:
        link.connect()
        link.request("direct")
        for pulses, seconds in steps:
            seen.append((hold(link, pulses, seconds), gen0.board.truth()))
    return gen0, seen


def moved(before, after, field):
    return after[field] - before[field]


@pytest.mark.slow
@pytest.mark.parametrize("fault,moves,other", [("swapped-pots", "shoulder", "elbow"), ("joints-swapped", "shoulder", "elbow")])
def test_a_pulse_on_the_shoulder_shows_on_the_elbow(make_sim, fault, moves, other):
    gen0, ((before, _), (after, truth)) = holds(make_sim, fault, ((CENTRE, CENTRE), 0.4),
                                                ((CENTRE + 400, CENTRE), 0.8))
    truth = truth["joints"]
    assert abs(moved(before, after, other + "_deg")) > 25 and abs(moved(before, after, moves + "_deg")) < 6
    if fault == "swapped-pots":  # the shoulder really moved, its pot shows on the elbow's pin
        assert truth[0]["angle_deg"] > 25 and abs(truth[1]["angle_deg"]) < 10
    else:  # the elbow really moved, fed the shoulder's pulse
        assert truth[1]["pulse_us"] == pytest.approx(CENTRE + 400, abs=1) and truth[1]["angle_deg"] > 25
    assert registry.find(gen0.port)["faults"] == [fault]


@pytest.mark.slow
def test_a_reversed_servo_turns_the_limb_against_its_pot(make_sim):
    _, ((before, _), (after, truth)) = holds(make_sim, "reversed-servo", ((CENTRE, CENTRE), 0.4),
                                             ((CENTRE + 400, CENTRE), 0.8))
    assert moved(before, after, "shoulder_deg") > 25  # the pot, inside the servo, follows the pulse
    assert moved(before, after, "ay") < -0.3  # the link turned the other way: gravity swings to -Y
    assert truth["joints"][0]["angle_deg"] < -25


@pytest.mark.slow
def test_a_disconnected_pot_does_not_follow_its_joint(make_sim):
    _, ((before, _), (after, truth)) = holds(make_sim, "pot-disconnected",  # the first joint: the shoulder
                                             ((CENTRE, CENTRE), 0.4), ((CENTRE + 400, CENTRE), 0.8))
    assert truth["joints"][0]["gear_deg"] > 25
    assert abs(moved(before, after, "shoulder_deg")) < 15 and abs(moved(before, after, "elbow_deg")) < 6


@pytest.mark.slow
def test_a_clipped_pot_saturates_near_the_top_of_its_travel(make_sim):
    _, seen = holds(make_sim, "pot-clipped:shoulder", ((CENTRE - 300, CENTRE), 0.6), ((CENTRE, CENTRE), 0.6),
                    ((CENTRE + 650, CENTRE), 0.8), ((CENTRE + 800, CENTRE), 0.6))
    (low, _), (centre, _), (high, _), (top, truth) = seen
    gear = truth["joints"][0]["gear_deg"]
    assert low["shoulder_raw"] < 60000 and moved(low, centre, "shoulder_deg") > 35  # ~1.6x the calibrated 30 deg
    assert high["shoulder_raw"] >= 65000 and top["shoulder_raw"] >= 65000 and gear > 70  # saturated: 4095 << 4
    assert abs(moved(high, top, "shoulder_deg")) < 2


@pytest.mark.slow
@pytest.mark.parametrize("fault,found", [("imu-absent", "[]"), ("imu-address", "[105]")])
def test_an_imu_that_does_not_answer_at_0x68(make_sim, fault, found):
    gen0 = board_with(make_sim, fault)
    with Link(gen0.port) as link:
        hello = link.connect()
        frame = link.next_telemetry(timeout=2)[3]
    assert hello["imu"]["ok"] is False
    assert "no MPU-6050 answers on I2C0 address 0x68" in hello["imu"]["error"] and "ENODEV" in hello["imu"]["error"]
    assert int(frame["flags"]) & 8 and frame["ax"] == frame["gz"] == 0  # F_IMU_MISSING
    text = repl(gen0.port, "from machine import I2C, Pin; print('scan', I2C(0, scl=Pin(22), sda=Pin(21)).scan())")
    assert "scan " + found in text.splitlines(), text


@pytest.mark.slow
def test_a_stuck_joint_does_not_move_and_stalls(make_sim):
    _, ((before, start), (after, truth)) = holds(make_sim, "stuck-joint:elbow", ((CENTRE, CENTRE), 0.4),
                                                 ((CENTRE + 300, CENTRE - 400), 0.8))
    gear = start["joints"][1]["gear_deg"]
    assert truth["joints"][1]["gear_deg"] == pytest.approx(gear, abs=0.5) and moved(before, after, "shoulder_deg") > 20
    # the reading only shifts by the stall current in the ground leads (~3-5 deg), never the 40 deg asked
    assert abs(moved(before, after, "elbow_deg")) < 8
    assert truth["joints"][1]["current_a"] > 0.45 and truth["supply_v"] < 4.4


@pytest.mark.slow
def test_a_weak_supply_browns_out_when_both_joints_start(make_sim):
    gen0 = board_with(make_sim, "weak-supply", seed=1)
    with Link(gen0.port) as link:
        link.connect()
        link.request("direct")
        hold(link, (CENTRE, CENTRE), 0.3)
        hold(link, (CENTRE + 300, CENTRE), 0.5)  # one servo at a time: the rail holds
        assert gen0.counters()["hard_resets"] == 0
        link.request("set", CENTRE - 200, CENTRE + 300)  # both at once
        end = time.monotonic() + 10
        while link.resets == 0 and time.monotonic() < end:  # the board restarts and says hello again
            time.sleep(0.05)
        text = link.device_text()
    assert gen0.counters()["hard_resets"] == 1 and gen0.board.brownouts == 1 and link.resets == 1
    assert "Brownout detector was triggered\r\n\r\nets Jul 29 2019" in text and "rst:0xc (SW_CPU_RESET)" in text
    text = repl(gen0.port, "import machine; print('cause', machine.reset_cause())")
    assert "cause 1" in text.splitlines(), text  # PWRON_RESET: ports/esp32/modmachine.c maps ESP_RST_BROWNOUT to it
