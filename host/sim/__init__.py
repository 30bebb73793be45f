"""The virtual Gen0: the real firmware under the real MicroPython VM, on a pty, with physics behind the pins.

`from host.sim import VirtualGen0`. Imported lazily so that `host ports` (which only
reads host.sim.registry) does not load the physics.
"""

__all__ = ["VirtualGen0"]


def __getattr__(name):
    if name == "VirtualGen0":
        from host.sim.vm import VirtualGen0

        return VirtualGen0
    raise AttributeError(f"module 'host.sim' has no attribute {name!r}")
