"""Train one model several times with other seeds, side by side, and keep the one predicted to track best.

The training seed alone moves an inverse model's closed-loop tracking by up to 0.6 deg on the same
sessions (host/EVAL.md "Velocity again"), while the training's closed-loop figure (rollout.py) ranks the
seeds as eval does. So `host train`, the demo and `host learn` train CANDIDATES seeds, each in a
process of its own (one torch thread each: these nets are too small for more), and keep the best by
that figure. Only the kept model's directory is written to `out`, whole, as one training writes it.
"""

import contextlib
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from host.errors import UserError
from host.sessions.stats import check_warnings
from host.train import checkpoint as ckpt
from host.train.dataset import load_sessions, of_unit, task_for

CANDIDATES = 3  # 11-12 s for the demo's training on 2 cores (one seed: 7.6 s); EVAL.md "Velocity and candidates: built"
MAX_CANDIDATES = 16
PARENT_CHECK_S = 0.5


def predicted(metrics):
    """The training's closed-loop figure pooled over the joints (TRAIN.md "Closed-loop figure"); inf when the
    training could not make one."""
    loop = (metrics.get("closed_loop") or {}).get("rmse_deg") or {}
    return round(math.sqrt(sum(v * v for v in loop.values()) / len(loop)), 3) if loop else math.inf


def check(candidates):
    """A whole number of candidates the machine can train, or a one-line error."""
    if isinstance(candidates, bool) or not isinstance(candidates, int) or not 1 <= candidates <= MAX_CANDIDATES:
        raise UserError(f"--candidates {candidates}: give a whole number from 1 to {MAX_CANDIDATES}")
    return candidates


def train(task, sessions=(), out=None, candidates=1, seed=None, progress=True, unit=None, say=print, nice=0, stop=None,
          **settings):
    """pipeline.train of `task` (its arguments), or with candidates > 1 that many seeds (seed, seed+1, ...) side
    by side, the one the closed-loop figure ranks best written to `out`: its metrics, with metrics["candidates"]
    (the seeds, each one's predicted tracking, the kept seed). `say` tells how the candidates did. This process
    needs no PyTorch: it only checks the sessions and the task before the candidates start. nice: the candidates'
    niceness (the demo trains while a robot is evaluated); stop: a threading.Event that ends them (UserError)."""
    if check(candidates) == 1:
        from host.train import pipeline

        return pipeline.train(task, sessions, out=out, progress=progress, seed=seed, unit=unit, **settings)
    loaded = of_unit(load_sessions(sessions), unit)
    for line in check_warnings(loaded):
        print(f"warning: {line}", file=sys.stderr)
    ahead = settings.get("ahead")
    task_for(task, loaded, **({} if ahead is None else {"ahead": ahead}))  # a wrong task fails once, here
    out = Path(out or Path("models") / task)
    out.parent.mkdir(parents=True, exist_ok=True)
    seeds = [(seed or 0) + k for k in range(candidates)]
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".candidates", dir=out.parent))
    started = time.perf_counter()
    say(f"training {candidates} candidates side by side (seeds {', '.join(map(str, seeds))}); the one the "
        "closed-loop figure ranks best is kept ...")
    workers = min(candidates, (os.cpu_count() or 1) + 1)  # 3 on 2 cores: 11 s, 2: 15
    paths = [str(x.path) for x in loaded]  # a loaded Session does not pickle; each process reads the files
    pending = [(s, work / str(s)) for s in seeds]
    running, results, trained = {}, {}, []
    try:
        while len(trained) < len(seeds):
            if stop is not None and stop.is_set():
                raise UserError("the training was stopped")
            while pending and len(running) < workers:
                s, place = pending.pop(0)
                with _ctrl_c_held():  # a Ctrl-C inside Popen would lose the started process: it waits till `running` has it
                    running[s] = _start(place, (task, paths, place / out.name, s, f"seed {s}: " if progress else False,
                                                settings), nice)
            for s, proc in list(running.items()):
                if proc.poll() is not None:
                    del running[s]
                    results[s] = _result(work / str(s), proc.returncode, s)
            while len(trained) < len(seeds) and seeds[len(trained)] in results:  # told in seed order
                s = seeds[len(trained)]
                m = results[s]
                figure = f"predicted tracking {predicted(m):.2f}°" if math.isfinite(predicted(m)) else \
                    f"no closed-loop figure, validation loss {m['val_loss']:.5f}"
                say(f"  seed {s}: {figure} ({m['epochs_run']} epochs, {m['timings']['total_s']:.1f} s)")
                trained.append(m)
            time.sleep(0.05)
        best = min(trained, key=lambda m: (predicted(m), m["val_loss"]))  # no figure (not inverse): the loss ranks
        best["candidates"] = {"seeds": seeds, "predicted_deg": [_finite(predicted(m)) for m in trained],
                              "kept_seed": best["config"]["seed"], "seconds": round(time.perf_counter() - started, 1)}
        kept = Path(best["path"])
        ckpt.rewrite_metrics(kept, {k: v for k, v in best.items() if k != "path"})
        ckpt.install(kept, out)
        best["path"] = str(out)
    finally:
        _end(running.values())  # a Ctrl-C or an error: the other candidates are not left running
        shutil.rmtree(work, ignore_errors=True)
    for line in best["warnings"]:
        print(f"warning: {line}", file=sys.stderr)
    return best


def _finite(v):
    return v if math.isfinite(v) else None


def _start(place, job, nice):
    """One candidate: a fresh interpreter (torch's thread pools do not survive fork) in a session of its own, so
    the terminal's Ctrl-C reaches only this process, which decides and stops them: a Ctrl-C while a candidate
    was still starting up used to print its KeyboardInterrupt traceback under "interrupted"."""
    place.mkdir(parents=True)
    spec = place / "job.pickle"
    spec.write_bytes(pickle.dumps({"path": sys.path, "job": job, "nice": nice, "parent": os.getpid()}))
    return subprocess.Popen([sys.executable, "-c", "import pickle, sys; spec = pickle.load(open(sys.argv[1], 'rb')); "
                             "sys.path[:] = spec['path']; from host.train.candidates import _candidate; _candidate(spec)",
                             str(spec)], stdin=subprocess.DEVNULL, stdout=2, start_new_session=True)  # stdout: --json prints there


@contextlib.contextmanager
def _ctrl_c_held():
    """Ctrl-C (KeyboardInterrupt, raised in the main thread only) held until the block ends, then raised."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    seen = []
    signal.signal(signal.SIGINT, lambda signum, frame: seen.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if seen:
            previous(signal.SIGINT, seen[0])


def _result(place, returncode, seed):
    """The candidate's metrics, or what it raised raised here (a UserError reads as if this process had trained)."""
    try:
        outcome = pickle.loads((place / "result.pickle").read_bytes())
    except (OSError, EOFError, pickle.UnpicklingError) as e:
        raise UserError(f"the candidate of seed {seed} ended without a result (exit code {returncode}): see the "
                        "lines above, or train with --candidates 1") from e
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _end(procs, within_s=5.0):
    """Terminate the candidates still running and wait for them (kill after within_s): none is left behind."""
    procs = [p for p in procs if p.poll() is None]
    for p in procs:
        p.terminate()
    deadline = time.monotonic() + within_s
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _candidate(spec):
    """A candidate's process: train, then leave the metrics (or the error) for the parent. A parent killed
    outright (kill -9) cannot stop it: it then ends itself within a second, not a training later."""
    if spec["nice"]:
        os.nice(spec["nice"])
    parent = spec["parent"]

    def watch():
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="candidate-parent-watch", daemon=True).start()
    job = spec["job"]
    try:
        outcome = _one(*job)
    except Exception as e:  # noqa: BLE001 -- raised again in the parent
        outcome = e
    place = Path(job[2]).parent
    tmp = place / "result.pickle.tmp"
    try:
        tmp.write_bytes(pickle.dumps(outcome))
    except (pickle.PicklingError, TypeError, AttributeError):
        tmp.write_bytes(pickle.dumps(UserError(f"{type(outcome).__name__}: {outcome}")))
    os.replace(tmp, place / "result.pickle")


def _one(task, sessions, out, seed, progress, settings):
    from host.train import pipeline

    sys.stdout = sys.stderr  # nothing of a candidate's reaches the parent's stdout (--json prints there)
    return pipeline.train(task, sessions, out=out, progress=progress, seed=seed, warn=False, **settings)
