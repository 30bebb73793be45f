"""The ESP32 port's `esp` module, as far as a board without radio tricks needs it.

Flash geometry of an ESP32_GENERIC 4 MiB module (the filesystem partition starts at 2 MiB);
osdebug only sets the level the port's log messages would print at.
Not here: flash_read/write/erase (the flash is a directory), gpio_matrix_*, neopixel_write,
dht_readinto (SIM.md).
"""

import micropython
from micropython import const

LOG_NONE = const(0)
LOG_ERROR = const(1)
LOG_WARNING = const(2)
LOG_INFO = const(3)
LOG_DEBUG = const(4)
LOG_VERBOSE = const(5)

_level = LOG_ERROR


@micropython.native
def osdebug(uart, level=LOG_ERROR):
    global _level
    if uart is not None and uart != 0:
        raise ValueError("UART(%s) doesn't exist" % uart)
    _level = LOG_NONE if uart is None else level


@micropython.native
def flash_size():
    return 4194304


@micropython.native
def flash_user_start():
    return 0x200000
