"""The ESP32 port's `network` module with the radio in a room without access points.

Interfaces start inactive, as after a reset. A station can be activated and told to
connect; like a board that finds no AP it keeps trying (status() STAT_CONNECTING, never
isconnected()), and scan() finds nothing. MACs are machine.unique_id() (station) and
that + 1 (access point), as ESP-IDF derives them; an active AP serves no one.
"""

import micropython
from micropython import const

import machine

STA_IF = const(0)
AP_IF = const(1)
STAT_IDLE = const(1000)
STAT_CONNECTING = const(1001)
STAT_GOT_IP = const(1010)
STAT_BEACON_TIMEOUT = const(200)
STAT_NO_AP_FOUND = const(201)
STAT_WRONG_PASSWORD = const(202)
STAT_ASSOC_FAIL = const(203)
STAT_HANDSHAKE_TIMEOUT = const(204)
AUTH_OPEN = const(0)
AUTH_WEP = const(1)
AUTH_WPA_PSK = const(2)
AUTH_WPA2_PSK = const(3)
AUTH_WPA_WPA2_PSK = const(4)

_hostname = "mpy-esp32"
_active = [False, False]
_connecting = False
_interfaces = []


@micropython.native
def hostname(name=None):
    global _hostname
    if name is None:
        return _hostname
    if not isinstance(name, str) or len(name) > 32:
        raise ValueError("hostname too long")
    _hostname = name


@micropython.native
def country(code=None):
    if code is None:
        return "01"


@micropython.native
def _mac(interface):
    mac = bytearray(machine.unique_id())
    mac[5] = (mac[5] + interface) & 0xFF
    return bytes(mac)


class WLAN:
    @micropython.native
    def __new__(cls, interface=STA_IF):
        if interface not in (STA_IF, AP_IF):
            raise ValueError("invalid WLAN interface identifier")
        while len(_interfaces) < 2:
            _interfaces.append(None)
        if _interfaces[interface] is None:
            wlan = object.__new__(cls)
            wlan._if = interface
            _interfaces[interface] = wlan
        return _interfaces[interface]

    @micropython.native
    def __init__(self, interface=STA_IF):
        pass

    @micropython.native
    def __repr__(self):
        return "<WLAN>"

    @micropython.native
    def active(self, *on):
        global _connecting
        if on:
            _active[self._if] = bool(on[0])
            if not _active[STA_IF]:
                _connecting = False
        return _active[self._if]

    @micropython.native
    def _started(self):
        if not (_active[STA_IF] or _active[AP_IF]):
            raise OSError("Wifi Not Started")

    @micropython.native
    def _sta(self):
        if self._if != STA_IF:
            raise OSError("STA required")

    @micropython.native
    def connect(self, ssid=None, key=None, *, bssid=None):
        global _connecting
        self._sta()
        self._started()
        if bssid is not None and len(bssid) != 6:
            raise ValueError
        _connecting = True

    @micropython.native
    def disconnect(self):
        global _connecting
        self._started()
        _connecting = False

    @micropython.native
    def isconnected(self):
        return False

    @micropython.native
    def status(self, *param):
        if param:
            if param[0] == "rssi":
                self._sta()
                raise OSError("Wifi Not Connected")
            if param[0] == "stations":
                if self._if != AP_IF:
                    raise OSError("AP required")
                return []
            raise ValueError("unknown status param")
        if self._if != STA_IF:
            return None
        return STAT_CONNECTING if _connecting else STAT_IDLE

    @micropython.native
    def scan(self):
        if not _active[STA_IF]:
            raise OSError("STA must be active")
        return []

    @micropython.native
    def ifconfig(self, *config):
        if not config:
            return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")

    @micropython.native
    def config(self, *name, **settings):
        if name and settings:
            raise TypeError("either pos or kw args are allowed")
        if settings:
            return
        if len(name) != 1:
            raise TypeError("can query only one param")
        name = name[0]
        if name == "mac":
            return _mac(self._if)
        if name in ("ssid", "essid"):
            return "ESP_%02X%02X%02X" % tuple(_mac(AP_IF)[3:]) if self._if == AP_IF else ""
        if name == "channel":
            return 1
        if name == "hostname":
            return _hostname
        if name == "txpower":
            return 20
        raise ValueError("unknown config param")
