"""Preview: the targets a model follows, reshaped into moves the servos can make.

A servo turns at most ~6 deg a tick (its slew limit, measured per unit from the training sessions), so a
target that jumps further cannot be followed: an inverse model asked for it drives past the target and
overshoots by 8-16 deg on 20-40 deg steps (host/EVAL.md). The least error any slew-limited path leaves on
a jump of s deg is a ramp at full speed centred on it, starting half a ramp early; that needs to see the
jump coming. So the model reads a shaped copy of the target ring, `window` ticks behind the raw targets:
each tick, the shaped target moves at most `slew` toward the raw target it is most urgently late for, the
one k ticks ahead with the largest |raw - shaped| - 2 * slew * k (ties: the farther). A target slower than
the slew limit is followed exactly; a jump becomes the centred ramp. The telemetry and the score keep the
raw targets. Meta `preview` of a blob: [window ticks, slew per joint in 0.01 deg per tick].

One source: compiled under viper on the board (track.py), run plain by the host (rollout.py, tests).
"""

RING = 128  # slots per joint of track mode's target rings, raw and shaped: a power of two > MAX_PAST + MAX_FUTURE
WINDOW_S = 0.2  # how far ahead a jump is seen: the ramp of a 180 deg jump at ~500 deg/s is ~0.36 s, half of it
SLEW_SHARE = 0.9  # of the servo's measured speed: the model keeps some headroom to catch up
FREE = 1 << 20  # the slew of a joint the blob does not shape: every target is reachable

# plan: u, window, joints, slew per joint. ref[u] from ref[u - 1] and ring[u .. u + window]. ptr32 loads
# are sign-extended as in track.FEATURES (SIGN 1 under viper, 0 in plain Python).
SOURCE = """
def shape(ring, ref, plan):
    r = ptr32(ring)
    f = ptr32(ref)
    p = ptr32(plan)
    m = SIGN
    m <<= 31
    u = p[0]
    window = p[1]
    nj = p[2]
    j = 0
    while j < nj:
        s = p[3 + j]
        base = j * RING_SLOTS
        prev = f[base + ((u - 1) & (RING_SLOTS - 1))]
        prev -= (prev & m) << 1
        best = -1
        move = 0
        k = 0
        while k <= window:
            v = r[base + ((u + k) & (RING_SLOTS - 1))]
            v -= (v & m) << 1
            d = v - prev
            late = d
            if late < 0:
                late = -late
            late -= 2 * s * k
            if late >= best:
                best = late
                move = d
            k += 1
        if move > s:
            move = s
        elif move < -s:
            move = -s
        f[base + (u & (RING_SLOTS - 1))] = prev + move
        j += 1
""".replace("RING_SLOTS", str(RING))


def plain():
    """The kernel as plain Python (ptr32 is the buffer itself)."""
    ns = {"ptr32": lambda b: b}
    exec(SOURCE.replace("SIGN", "0"), ns)
    return ns["shape"]


def window_ticks(rate_hz):
    """The preview window at this loop rate, in ticks."""
    return max(1, round(WINDOW_S * rate_hz))


def shaped(columns, window, slews, start=None):
    """Whole trajectories through the kernel, as the board's track mode feeds it: columns (one list of 0.01 deg
    per joint, equal lengths), the shaped columns back. start: where each joint stands before (default: its first
    target). For the host: the board shapes tick by tick."""
    import array

    nj, n = len(columns), len(columns[0])
    ring, ref = array.array("i", [0] * (RING * nj)), array.array("i", [0] * (RING * nj))
    plan = array.array("i", [0, window, nj] + [int(s) for s in slews])
    kernel = plain()
    out = [[0] * n for _ in columns]
    for j in range(nj):
        ref[j * RING + (RING - 1)] = columns[j][0] if start is None else start[j]
        for u in range(window + 1):
            ring[j * RING + (u & (RING - 1))] = columns[j][min(u, n - 1)]
    for u in range(n):
        plan[0] = u
        kernel(ring, ref, plan)
        for j in range(nj):
            out[j][u] = ref[j * RING + (u & (RING - 1))]
            ring[j * RING + ((u + window + 1) & (RING - 1))] = columns[j][min(u + window + 1, n - 1)]
    return out
