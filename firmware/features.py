"""Model input features, named once for the host (training) and the device (track mode).

A feature is `<signal>` or `<signal>@<k>`: the signal's value k ticks from now
(k < 0: the past, k > 0: the future). Signals are telemetry fields (`shoulder_deg`,
`elbow_cmd_us`, `gz`, ...) and, per joint, `<joint>_target_deg`: the angle the robot
should reach. On the device that is the trajectory being tracked; in a logged session
it is the angle actually reached (`<joint>_deg`), which is how an inverse model learns
which command reaches which angle. Only targets may look into the future.
"""

MAX_PAST = 16  # ticks of history the device keeps per signal
MAX_FUTURE = 64  # ticks a target may be looked ahead
TARGET = "_target_deg"


def parse(name):
    """(signal, k) of a feature name; ValueError says what is wrong."""
    signal, at, k = name.partition("@")
    if not signal or not all(c.isalpha() or c.isdigit() or c == "_" for c in signal):
        raise ValueError("feature %r: a signal name is letters, digits and _" % name)
    if at:
        try:
            k = int(k)
        except ValueError:
            raise ValueError("feature %r: the offset after @ is a whole number of ticks" % name)
    else:
        k = 0
    if k > 0 and not signal.endswith(TARGET):
        raise ValueError("feature %r: only <joint>%s may look ahead" % (name, TARGET))
    if not -MAX_PAST <= k <= MAX_FUTURE:
        raise ValueError("feature %r: offset out of range %d..%d ticks" % (name, -MAX_PAST, MAX_FUTURE))
    return signal, k


def logged_signal(signal):
    """The telemetry column that stands for `signal` in a logged session."""
    if signal.endswith(TARGET):
        return signal[: -len(TARGET)] + "_deg"
    return signal
