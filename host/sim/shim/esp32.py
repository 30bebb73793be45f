"""The ESP32 port's `esp32` module: the chip's own sensors and heap report.

raw_temperature is the internal sensor's uncalibrated reading (°F-ish, ~128 on a running
chip). idf_heap_info reports ESP-IDF's heap regions (not MicroPython's heap, which
gc.mem_free() tells): fixed figures of a freshly booted ESP32_GENERIC.
Not here: NVS, Partition (no OTA), RMT, ULP, wake_on_* and deep-sleep holds (SIM.md).
"""

import micropython
from micropython import const

HEAP_DATA = const(4)  # MALLOC_CAP_8BIT
HEAP_EXEC = const(1)  # MALLOC_CAP_EXEC
WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True

_DATA = ((7288, 0, 0, 0), (16648, 4, 4, 4), (94608, 27040, 26624, 26544), (15072, 15024, 15024, 15024),
         (113840, 69396, 65536, 69396))
_EXEC = ((113840, 69396, 65536, 69396), (23324, 23300, 23296, 23300))


@micropython.native
def raw_temperature():
    return 128


@micropython.native
def idf_heap_info(capabilities):
    return list(_DATA if capabilities & HEAP_DATA else _EXEC if capabilities & HEAP_EXEC else ())
