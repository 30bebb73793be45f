"""Telemetry decoded by the schema the device announces in its hello, never by fixed offsets."""

import struct


class TelemetrySchema:
    """Field names, struct types, units and scales of one firmware's telemetry payload."""

    def __init__(self, fields):
        if not fields:
            raise ValueError("the hello frame carries no telemetry schema")
        self.fields = [dict(f) for f in fields]
        self.names = [f["name"] for f in self.fields]
        self.units = [f.get("unit", "") for f in self.fields]
        self.scales = [float(f.get("scale", 1) or 1) for f in self.fields]
        self.struct = struct.Struct("<" + "".join(f["type"] for f in self.fields))
        self.size = self.struct.size

    @classmethod
    def from_hello(cls, hello):
        return cls(hello.get("schema") or [])

    def unpack(self, payload):
        """Raw integers of one telemetry payload, or None if its size does not match the schema."""
        if len(payload) != self.size:
            return None
        return self.struct.unpack(payload)

    def to_units(self, raw):
        """{name: value in its unit} for one unpacked payload."""
        return {n: v * s for n, v, s in zip(self.names, raw, self.scales)}

    def integers(self):
        """The fields whose values are whole numbers in their unit (an integer type, scale 1): sessions load them
        as int64, exports and the live view keep them integers."""
        return [n for n, f, s in zip(self.names, self.fields, self.scales) if s == 1 and f["type"] in "bBhHiIlLqQ"]

    def numpy_dtype(self):
        import numpy as np

        return np.dtype([(n, "<" + f["type"]) for n, f in zip(self.names, self.fields)])
