"""The virtual Gen0's serial port: a pty for the user, and the ESP32 UART between it and the VM.

Why a relay instead of giving the user the VM's own pty: an ESP32 on a USB-UART
bridge moves 10 bits a byte at the baud rate, keeps 260 received bytes and
drops what overflows (no flow control), and makes the writer wait while its
128-byte TX FIFO is full. A pty does none of that; Uart does, between the two.

- UserPort: the pty the user opens (pyserial, mpremote, screen). Raw, so no
  echo; like a USB bridge it discards output while no one has the port open.
- vm_pty(): the VM's terminal: raw except ISIG, so byte 0x03 becomes SIGINT ->
  KeyboardInterrupt while code runs (the VM switches it fully raw at its prompt).
- Uart: pacing, the 260-byte receive buffer with drops, the TX FIFO, --corrupt.
"""

import errno
import fcntl
import os
import random
import struct
import termios
import tty

from host.errors import UserError
from host.link.port import DEFAULT_BAUD

RX_BUFFER = 260  # the ESP32's stdin ring buffer
TX_FIFO = 128  # the ESP32 UART's hardware TX FIFO
HOST_QUEUE = 4096  # bytes the host may have in flight before its writes block (USB bridge buffer)
CTRL_C = 3


def inq(fd):
    """Bytes waiting in a tty's input queue (TIOCINQ)."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.TIOCINQ, b"\0\0\0\0"))[0]


def vm_pty():
    """(master, slave) for the VM: raw (NOFLSH keeps queued input). ISIG stays on for the unix REPL to
    toggle, but no character raises a signal: the supervisor interrupts the VM itself (vm.py, _ctrl_c)."""
    master, slave = os.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[0] = 0  # iflag: no CR/NL mapping, no IXON flow control
    attrs[1] = 0  # oflag: bytes out as written (print emits bare \n; see SIM.md)
    attrs[2] = termios.CS8 | termios.CREAD | termios.CLOCAL
    attrs[3] = termios.ISIG | termios.NOFLSH  # no echo, no line editing, no IEXTEN
    cc = attrs[6]
    cc[termios.VMIN], cc[termios.VTIME] = 1, 0
    cc[termios.VINTR] = cc[termios.VQUIT] = cc[termios.VSUSP] = 0  # else 0x03/0x1C/0x1A would signal the VM
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    os.set_blocking(master, False)
    return master, slave, attrs


class UserPort:
    """The pty the user opens. We hold only the master, so POLLHUP says no one has the port open."""

    def __init__(self, link=None):
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        tty.setraw(slave)  # no echo: an echo would feed the board's output back into it
        os.close(slave)
        os.set_blocking(self.master, False)
        self.link = None
        if link:
            self._make_link(link)

    def _make_link(self, link):
        """A stable name for the pty; a stale symlink is replaced, anything else is left alone."""
        if os.path.lexists(link) and not os.path.islink(link):
            os.close(self.master)
            raise UserError(f"--link {link} exists and is not a symlink; pick another path or remove it")
        tmp = f"{link}.{os.getpid()}.tmp"
        try:
            os.symlink(self.path, tmp)
            os.replace(tmp, link)
        except OSError as e:
            os.close(self.master)
            raise UserError(f"cannot create --link {link} ({e.strerror}); pick a writable path")
        self.link = link

    def read(self):
        """What the host wrote, b'' if nothing, None if no one has the port open."""
        try:
            return os.read(self.master, 4096)
        except BlockingIOError:
            return b""
        except OSError as e:
            if e.errno == errno.EIO:
                return None
            raise

    def write(self, data):
        """Bytes to the host; returns how many were lost (port closed, or host not reading)."""
        try:
            return len(data) - os.write(self.master, data)
        except BlockingIOError:
            return len(data)
        except OSError as e:
            if e.errno == errno.EIO:
                return len(data)
            raise

    def close(self):
        """The port vanishes (the pty node goes with its master)."""
        if self.link and os.path.islink(self.link) and os.readlink(self.link) == self.path:
            os.unlink(self.link)
        if self.master is not None:
            os.close(self.master)
            self.master = None


class Uart:
    """ESP32 UART timing and buffers, in bytes per second of host time (rate None = no limit).

    Each direction is a line that is free again at `*_clock`; bytes queued on an
    idle line start now, back-to-back bytes follow each other at the rate."""

    def __init__(self, baud=DEFAULT_BAUD, speed=None, corrupt=0.0, seed=0):
        scale = 1.0 if speed is None else speed
        self.rate = baud / 10 * scale if baud and scale else None
        self.corrupt = corrupt
        self.rng = random.Random(f"corrupt:{seed}")
        self.rx = bytearray()  # host -> device bytes not yet on the wire
        self.tx = bytearray()  # the device's TX FIFO
        self._rx_clock = self._tx_clock = 0.0
        self.rx_bytes = self.rx_dropped = 0
        self.tx_bytes = self.tx_lost = self.tx_corrupted = 0

    def host_sent(self, data, now):
        if not self.rx:
            self._rx_clock = max(self._rx_clock, now)
        self.rx += data

    def hold_rx(self, now):
        """The device is not listening yet (booting): queued host bytes wait, the line idles."""
        self._rx_clock = max(self._rx_clock, now)

    def device_sent(self, data, now):
        """Into the TX FIFO (the caller keeps it within tx_room(), blocking the VM beyond)."""
        if not self.tx:
            self._tx_clock = max(self._tx_clock, now)
        self.tx += data

    def tx_room(self):
        return max(0, TX_FIFO - len(self.tx))

    def rx_due(self, now):
        """Host bytes that have finished arriving at the device by `now`."""
        n = self._due(len(self.rx), now, "_rx_clock")
        data = bytes(self.rx[:n])
        del self.rx[:n]
        return data

    def receive(self, data, pending):
        """Into the 260-byte buffer now holding `pending`: (bytes kept, count dropped).

        0x03 is never dropped: the ESP32 acts on it at interrupt level, not in the buffer."""
        room = max(0, RX_BUFFER - pending)
        kept, dropped = data[:room], data[room:]
        if CTRL_C in dropped:
            kept += bytes(b for b in dropped if b == CTRL_C)
            dropped = bytes(b for b in dropped if b != CTRL_C)
        self.rx_bytes += len(kept)
        self.rx_dropped += len(dropped)
        return kept, len(dropped)

    def tx_due(self, now):
        """FIFO bytes that have left on the wire by `now`, some bits flipped if --corrupt."""
        n = self._due(len(self.tx), now, "_tx_clock")
        data = bytearray(self.tx[:n])
        del self.tx[:n]
        if self.corrupt:
            for i in range(n):
                if self.rng.random() < self.corrupt:
                    data[i] ^= 1 << self.rng.randrange(8)
                    self.tx_corrupted += 1
        self.tx_bytes += n
        return bytes(data)

    def _due(self, queued, now, clock):
        if not queued or self.rate is None:
            return queued
        start = getattr(self, clock)
        n = min(queued, max(0, int((now - start) * self.rate + 1e-6)))
        setattr(self, clock, start + n / self.rate)
        return n

    def next_due(self, now):
        """Seconds until the next byte completes on either line (None: both idle)."""
        if self.rate is None:
            return 0.0 if self.rx or self.tx else None
        waits = [clock + 1 / self.rate - now for queue, clock in ((self.rx, self._rx_clock), (self.tx, self._tx_clock)) if queue]
        return max(0.0, min(waits)) if waits else None
