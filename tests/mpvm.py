"""Run code under the real MicroPython unix VM, so device code is tested where it runs.

The VM is the one the virtual Gen0 runs (host.sim.unix_vm.find_micropython): missing, it fails the
test with the same UserError and the same `pip install` advice.
"""
import os
import subprocess

from host.sim.unix_vm import find_micropython


class MicroPythonError(RuntimeError):
    """The VM exited non-zero; carries its output so the failing test shows the traceback."""


def run_micropython(code_or_path, sys_path=(), heap=None, timeout=30, stdin=None):
    """Stdout of running a file (an existing path) or a code string, decoded as UTF-8 with surrogateescape.

    sys_path entries come first on MicroPython's sys.path (after the script's own folder);
    heap is bytes for `-X heapsize=`; stdin is bytes or str fed to the VM.
    """
    cmd = [find_micropython()]
    if heap:
        cmd += ["-X", "heapsize=%d" % heap]
    is_path = isinstance(code_or_path, os.PathLike) or ("\n" not in code_or_path and os.path.isfile(code_or_path))
    cmd += [os.fspath(code_or_path)] if is_path else ["-c", code_or_path]
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([str(p) for p in sys_path] + [".frozen"]))
    if isinstance(stdin, str):
        stdin = stdin.encode()
    try:
        done = subprocess.run(cmd, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                              capture_output=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        raise MicroPythonError("micropython ran past %ss\n--- stdout ---\n%s\n--- stderr ---\n%s"
                               % (timeout, _text(e.stdout), _text(e.stderr))) from None
    out = _text(done.stdout)
    if done.returncode:
        raise MicroPythonError("micropython exited %d\n--- stdout ---\n%s\n--- stderr ---\n%s"
                               % (done.returncode, out, _text(done.stderr)))
    return out


def _text(data):
    return (data or b"").decode("utf-8", "surrogateescape")
