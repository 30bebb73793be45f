"""Live telemetry for Foxglove: `host monitor --foxglove` serves what the board sends over the Foxglove
WebSocket protocol, on the same channels, schemas and message JSON as an MCAP export
(host/sessions/mcap.py), so a layout made for a recording works live.

/telemetry carries each frame as the export writes it: `t` the device's clock unwrapped from the first
frame seen, `seq` unwrapped, `segment` counting the board's resets since the monitor connected; a
message's log time is the host's receive time. /log carries the board's log frames; /commands and
/markers are advertised for the layout's sake (the monitor sends the board no commands of the user's).

foxglove-sdk is optional (the [export] extra): imported here, when a server starts.
"""

import ipaddress

from polyniod_firmware import protocol as P

from host.errors import UserError
from host.sessions.exporting import INSTALL

DEFAULT_PORT = 8765


def parse_listen(text):
    """--listen HOST:PORT ([v6]:PORT too) as (host, port); anything else a one-line UserError."""
    host, colon, port = (text or "").rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        if not colon or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError
        ipaddress.ip_address(host)
    except ValueError:
        raise UserError(f"--listen {text!r}: give ADDRESS:PORT, an IP address and a port from 1 to 65535 "
                        f"(e.g. 127.0.0.1:{DEFAULT_PORT}; 0.0.0.0:{DEFAULT_PORT} serves every interface)") from None
    return host, int(port)


class FoxgloveLive:
    """A Foxglove WebSocket server fed by `host monitor`'s loop; as a context manager it always stops."""

    def __init__(self, host="127.0.0.1", port=DEFAULT_PORT):
        try:
            import foxglove
        except ModuleNotFoundError as e:
            if e.name != "foxglove":
                raise  # the package is there but broken: show what is missing inside it
            raise UserError(f"--foxglove needs foxglove-sdk, which is not installed here: {INSTALL}") from None
        from host.sessions import mcap

        self.foxglove, self.mcap = foxglove, mcap
        try:
            self.server = foxglove.start_server(name="polyniod", host=host, port=port)
        except Exception as e:  # the SDK says why (address in use, not ours) in its own exception type
            raise UserError(f"--foxglove: cannot serve on {host}:{port} ({e})") from None
        self.url = f"ws://{host if ':' not in host else f'[{host}]'}:{self.server.port}"
        self.events = {topic: self._channel(topic, schema) for topic, schema in mcap.EVENT_CHANNELS.items()}
        self.telemetry = self.fields = None
        self.segment, self.resets = -1, None

    def _channel(self, topic, schema, metadata=None):
        return self.foxglove.Channel(topic, message_encoding="json", metadata=metadata or {},
                                     schema=self.foxglove.Schema(name=schema["title"], encoding="jsonschema",
                                                                 data=self.mcap.encode(schema)))

    def add_telemetry(self, link, item):
        """One frame from link.next_telemetry(): a reset or a new schema starts the next segment."""
        host_time, seq, t_us, values = item
        if link.resets != self.resets or link.schema.fields != self.fields:
            self._new_segment(link)
        row = [self.ticks(t_us) / 1e6, self.seqs(seq), self.segment]
        row += [int(values[n]) if n in self.integer else values[n] for n in self.names[3:]]
        self.telemetry.log(self.mcap.telemetry_message(self.names, row), log_time=int(self.mcap.ns(host_time)))

    def add_log(self, host_time, level, text):
        self.events["/log"].log(self.mcap.encode(self.mcap.log_message(host_time, level, text)),
                                log_time=int(self.mcap.ns(host_time)))

    def _new_segment(self, link):
        schema = link.schema
        self.segment += 1
        self.resets = link.resets
        self.ticks, self.seqs = P.Unwrapper(P.TICKS_PERIOD, signed=True), P.Unwrapper(0x10000)
        if schema.fields == self.fields:  # a hello the host asked for: the same run
            return
        if self.telemetry is not None:
            self.telemetry.close()  # a new schema: the channel is advertised again under it
        fields = dict(zip(schema.names, schema.units))
        self.integer = set(schema.integers())  # as a session loads them
        self.names = ["t", "seq", "segment", *schema.names]
        self.telemetry = self._channel(self.mcap.TELEMETRY_TOPIC, self.mcap.telemetry_schema(fields, self.integer),
                                       self.mcap.telemetry_metadata(fields))
        self.fields = schema.fields

    def close(self):
        self.server.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
