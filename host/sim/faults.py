"""Wiring faults a virtual Gen0 can be built with (`host sim --fault NAME[:JOINT]`), so that checks meet a
robot that really has them.

A fault changes a wire or a part, never a reading: board.py and plant.py carry it through the same
physics as the healthy robot (SIM.md, "Wiring faults"). Without faults nothing changes: same seed,
same run, bit for bit. This module names the faults, parses them and holds their figures.
"""

from dataclasses import dataclass

# name -> (takes a joint, what is wired wrong, what a check should see); SIM.md has the same table
FAULTS = {
    "swapped-pots": (False, "the two pot wipers on each other's ADC pins (GPIO 34 reads the elbow's pot, 35 the shoulder's)",
                     "moving one joint moves the other joint's reading"),
    "reversed-servo": (True, "the servo mounted the other way round: its horn, and the link on it, turn the other "
                             "way for the same pulse; its pot, inside the servo, still follows the pulse",
                       "the pot reading follows the pulse but the limb and the IMU turn the opposite way"),
    "pot-disconnected": (True, "the wiper wire off: the ADC pin floats",
                         "a noisy, drifting reading that does not follow the joint (it leans towards the pin read before it)"),
    "pot-clipped": (True, "the pot fed from the 5 V rail instead of the servo's ~3 V reference (a clone): the wiper "
                          "spans ~0.5-4.2 V, past the ADC's 11 dB range",
                    "the reading saturates at 4095 over the upper part of the travel (from ~+40 deg) and moves "
                    "~1.6x the calibrated slope below it"),
    "imu-absent": (False, "no MPU-6050 on the I2C bus (unplugged or unpowered)",
                   "every I2C transfer fails with ENODEV; the firmware reports imu.ok false, telemetry flags IMU missing"),
    "imu-address": (False, "the MPU-6050's AD0 pulled high: it answers at 0x69, not 0x68",
                    "nothing at 0x68 (imu.ok false, ENODEV); an I2C scan finds 0x69"),
    "joints-swapped": (False, "the two servo signal wires swapped (GPIO 25 drives the elbow servo, 26 the shoulder); "
                              "the pots stay with their joints",
                       "a pulse on one joint moves the other joint"),
    "weak-supply": (False, "the servos and the DevKit on a weak 5 V source (a passive hub and a long thin cable, "
                           "2.8 ohm in all)",
                    "the rail sags far more under load; both servos starting or stalling pull the ESP32's 3.3 V rail "
                    "below the brownout threshold: a hard reset (`Brownout detector was triggered`, reset_cause() "
                    "PWRON_RESET)"),
    "stuck-joint": (True, "the joint's gear train seized",
                    "the joint does not move whatever the pulse; its motor stalls and draws stall current (the "
                    "supply sags, the ADC gets noisier)"),
}

# Figures (REFERENCE.md has the healthy robot's; these are the faulty parts')
WEAK_SOURCE_OHM = 2.8  # the rail while one servo starts: >= 3.55 V, both at once: <= 3.15 V (healthy: 0.9-1.5 ohm)
LDO_DROPOUT_V = 1.0  # the DevKit's AMS1117-3.3 near 100 mA: the 3.3 V rail is the 5 V rail less this, at most 3.3 V
BROWNOUT_V = 2.43  # ESP-IDF brownout detector level 0 (the default) on the 3.3 V rail
BROWNOUT_SUPPLY_V = BROWNOUT_V + LDO_DROPOUT_V  # the 5 V rail below which the ESP32 resets: 3.43 V
# The detector sees the rail smoothed over this time: the plant's supply lags its current by one
# step and undershoots for that step when a servo starts; the DevKit's capacitors ride through that.
DETECTOR_S = 0.001
REARM_S = 0.3  # after a reset the app arms the detector again at its startup, after the ROM and bootloader
SEIZED_NM = 1.0  # friction of a seized gear train: ~6x the SG90's stall torque, so the motor only stalls
POT_REF_V = 3.0  # the stock controller's pot reference the plant's pot volts assume; pot-clipped scales them by supply / this
# A floating ADC1 input (no pull-ups on 34-39): the sample capacitor's charge sets what it reads
FLOAT_SHARE = 0.35  # of the way to the last converted voltage (the neighbour pin) each conversion moves it
FLOAT_LEAK_V = (0.4, 1.4)  # the level leakage settles to, drawn per unit, and the band its slow walk stays in
FLOAT_LEAK_S = 0.3  # time constant towards that level
FLOAT_WALK_V_RTS = 0.25  # slow drift of the level, V/sqrt(s)
FLOAT_HUM_V, FLOAT_HUM_HZ = 0.12, 50.0  # mains hum a dangling wire picks up
FLOAT_NOISE_V = 0.06  # conversion-to-conversion noise
IMU_AD0_HIGH = 0x69


@dataclass(frozen=True)
class Fault:
    name: str
    joint: "int | None" = None  # index into the robot's joints, for faults that take one
    joint_name: "str | None" = None

    def __str__(self):
        return self.name if self.joint is None else f"{self.name}:{self.joint_name}"


def usage():
    """The valid spellings, for error messages and --help."""
    return ", ".join(f"{name}[:JOINT]" if takes else name for name, (takes, _, _) in FAULTS.items())


def parse(specs, joint_names):
    """Faults from 'NAME' / 'NAME:JOINT' strings (or Faults); ValueError, one line, naming the valid ones."""
    faults = []
    for spec in specs or ():
        if isinstance(spec, Fault):
            spec = str(spec)
        name, _, joint = str(spec).partition(":")
        if name not in FAULTS:
            raise ValueError(f"unknown fault {spec!r}: the faults are {usage()}")
        if not FAULTS[name][0]:
            if joint:
                raise ValueError(f"fault {name} takes no joint (got {spec!r}); the faults are {usage()}")
            fault = Fault(name)
        else:
            joint = joint or joint_names[0]
            if joint not in joint_names:
                raise ValueError(f"fault {spec!r}: no joint {joint!r}; the joints are {', '.join(joint_names)}")
            fault = Fault(name, joint_names.index(joint), joint)
        if fault not in faults:
            faults.append(fault)
    return tuple(faults)


def joints_with(faults, name):
    """Indices of the joints that have fault `name`."""
    return {f.joint for f in faults if f.name == name}


def has(faults, name):
    return any(f.name == name for f in faults)


def describe(fault):
    """One line: the fault and what is wired wrong."""
    return f"{fault}: {FAULTS[fault.name][1]}"
