"""Plain text for listings (`host sessions`, `host models`, `host info`): padded columns, durations."""

import json
import math


def print_listing(rows, as_json, empty, header, row):
    """A listing command's output: the rows as JSON, `empty` when there are none, else a table of header
    and row(r) per row; a row that could not be read ({"name", "error"}) shows its error in the last column."""
    if as_json:
        print(json.dumps(rows, indent=1))
    elif not rows:
        print(empty)
    else:
        print_table([header] + [(r["name"], *"-" * (len(header) - 2), r["error"]) if "error" in r else row(r)
                                for r in rows])


def print_table(rows):
    """Print rows of strings (the first is the header), each column padded to its widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])


def duration(seconds):
    """12.3 s, 4:05, 1:02:03; "-" for None or anything that is not a finite time (a damaged record)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"
