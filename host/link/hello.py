"""The board's self-description (its hello frame), read in one place.

A hello is the JSON object the firmware sends at boot and on `hello` (loop.py Gen0.info): firmware
and protocol versions, the unit's id, the robot description (joints and their calibration, link),
loop rate, telemetry schema, modes and flags. Sessions store it as it came; every host module reads
it through Hello, so a field that moves or gains a default changes here only.
"""

import json
from collections.abc import Mapping

from host.link.port import DEFAULT_BAUD
from host.link.schema import TelemetrySchema


class Hello(Mapping):
    """A hello: the raw object (read-only, as a Mapping: what sessions store) and named look-ups."""

    def __init__(self, data):
        self.data = dict(data)
        self._schema = None

    @classmethod
    def parse(cls, payload):
        """The Hello of a T_HELLO payload, or None when it is not a JSON object."""
        try:
            data = json.loads(payload)
        except ValueError:
            return None
        return cls(data) if isinstance(data, dict) else None

    @classmethod
    def of(cls, value):
        """A Hello of a stored hello (a dict), a Hello as it is, None for anything else."""
        if isinstance(value, Hello):
            return value
        return cls(value) if isinstance(value, dict) else None

    # the raw object, as stored
    def __getitem__(self, key):
        return self.data[key]

    def __iter__(self):
        return iter(self.data)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        return f"<Hello fw {self.fw} board {self.board_id}: {', '.join(self.joints)} at {self.rate_hz} Hz>"

    # -- versions and identity -------------------------------------------------------------------------
    fw = property(lambda self: self.data.get("fw"))
    proto = property(lambda self: self.data.get("proto"))
    board_id = property(lambda self: self.data.get("board_id"), doc="the unit's id (machine.unique_id, hex)")
    mpy = property(lambda self: self.data.get("mpy"))
    platform = property(lambda self: self.data.get("platform"))
    model = property(lambda self: self.data.get("model") or "", doc="the active model's id, '' when none")

    @property
    def micropython(self):
        """'1.29.0', or None when the hello does not say."""
        version = self.data.get("micropython")
        return ".".join(str(v) for v in version) if version else None

    # -- the robot ---------------------------------------------------------------------------------------
    @property
    def robot(self):
        """The robot description the board runs (hardware/gen0.json as the firmware completed it)."""
        return self.data.get("robot") or {}

    @property
    def joints(self):
        """Joint names, in telemetry and command order."""
        return [j["name"] for j in self.robot.get("joints", [])]

    def joint(self, name):
        """The description of one joint (pins, pulse range, nominal calibration); KeyError if none."""
        for j in self.robot.get("joints", []):
            if j["name"] == name:
                return j
        raise KeyError(f"the board has no joint {name!r} (its joints: {', '.join(self.joints)})")

    @property
    def checked(self):
        """The last `host check --write` stored in the robot description ({"verdict", "date", ...}), or None."""
        record = self.robot.get("check")
        return record if isinstance(record, dict) else None

    def check_warning(self):
        """One line when this board has never passed `host check` (no check stored, or its last one failed), else
        None: data from a miswired robot teaches a model the wiring fault."""
        record = self.checked
        if record is None:
            return (f"board {self.board_id} has never passed `host check`: run `host check --port PORT --write` "
                    "to find wiring faults (swapped pots, a reversed servo, a weak supply) before you rely on its data")
        if record.get("verdict") == "FAIL":
            bad = ", ".join(k for k, v in (record.get("steps") or {}).items() if v == "FAIL")
            return (f"board {self.board_id} failed its last `host check` ({record.get('date', '?')}: {bad or '?'}): "
                    "fix what it said, then `host check --port PORT --write`")
        return None

    @property
    def baud(self):
        """The link's baud rate: the robot description's, else the default every board starts with."""
        return (self.robot.get("link") or {}).get("baud") or DEFAULT_BAUD

    # -- the loop and its telemetry ----------------------------------------------------------------------
    rate_hz = property(lambda self: self.data.get("rate_hz"))
    telemetry_every = property(lambda self: self.data.get("telemetry_every", 1) or 1,
                               doc="ticks per telemetry frame")
    modes = property(lambda self: list(self.data.get("modes") or []))
    flags = property(lambda self: list(self.data.get("flags") or []))

    @property
    def frame_hz(self):
        """Telemetry frames a second."""
        return self.rate_hz / self.telemetry_every if self.rate_hz else None

    @property
    def schema(self):
        """The TelemetrySchema of its frames, or None when it announces none."""
        if self._schema is None and self.data.get("schema"):
            self._schema = TelemetrySchema(self.data["schema"])
        return self._schema

    def mode(self, name):
        """The telemetry `mode` value of a mode; KeyError naming the board's modes if it has none."""
        try:
            return self.modes.index(name)
        except ValueError:
            raise KeyError(f"the board has no mode {name!r} (its modes: {', '.join(self.modes)})") from None

    def flag(self, name):
        """The telemetry `flags` bit of a flag; KeyError naming the board's flags if it has none."""
        try:
            return 1 << self.flags.index(name)
        except ValueError:
            raise KeyError(f"the board has no flag {name!r} (its flags: {', '.join(self.flags)})") from None

    def same_robot(self):
        """(joint names, loop rate): what data from two boards must share to be learnt together."""
        return tuple(self.joints), self.rate_hz
