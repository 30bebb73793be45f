"""The firmware's version; the host compares it with the firmware it ships (`host flash` updates)."""

FIRMWARE_VERSION = "0.3.0"
