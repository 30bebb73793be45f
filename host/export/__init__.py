"""Float MLP -> the int8 blob the device runs, and the numpy reference of the device's arithmetic.

`quantize.export(layers, calibration, ...)` -> blob bytes; `reference.Reference(blob)` runs it
on the host exactly as firmware/mlp.py does on the board. Format and arithmetic: firmware/MLP.md.
"""
