"""Lets CPython import the firmware's shared modules as `polyniod_firmware`.

Not copied onto the board: on the ESP32 every module here is top-level.
"""
