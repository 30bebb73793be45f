"""The virtual Gen0's VM process: the unix port (a CPython extension, micropython_run) with an ESP32's Ctrl-C.

The unix port's own Ctrl-C is a SIGINT whose handler jumps out of whatever C code runs: out of the
allocator or the collector, leaving the heap locked (a deadlock, or "FATAL: uncaught NLR" at the
next allocation). An ESP32's UART interrupt only marks a KeyboardInterrupt pending, and the VM
raises it at its next check (a loop's backward jump, a call, a wait). Here SIGUSR1 does the same:
its handler is the port's own mp_sched_keyboard_interrupt, and a wait it cuts short (EINTR, no
SA_RESTART) handles the pending exception at once. The supervisor sends it (vm.py, _ctrl_c).
Run as: python vm_main.py <the micropython command line>.
"""

import ctypes
import signal
import sys

import micropython_run

KEYBOARD_INTERRUPT = signal.SIGUSR1


def arm():
    """Make KEYBOARD_INTERRUPT call mp_sched_keyboard_interrupt() and interrupt system calls."""
    vm = ctypes.CDLL(micropython_run.__file__)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
    handler = ctypes.cast(vm.mp_sched_keyboard_interrupt, ctypes.c_void_p)  # void f(void): the signo is ignored
    if libc.signal(KEYBOARD_INTERRUPT, handler) == ctypes.c_void_p(-1).value:
        raise OSError(ctypes.get_errno(), "signal(SIGUSR1)")
    libc.siginterrupt(KEYBOARD_INTERRUPT, 1)


if __name__ == "__main__":
    arm()
    sys.exit(micropython_run.run_main(sys.argv))
