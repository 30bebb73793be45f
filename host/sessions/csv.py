"""A session's telemetry columns as CSV: one row per frame, units in the header (`shoulder_deg[deg]`)."""

from host.files import atomic_file


def write_csv(s, path):
    """All columns, header row `name[unit]`; floats in their shortest exact form (repr), NaN as nan.
    Written as host.files.atomic_file does: a regular file via a temp file beside it, then a rename."""
    names = list(s.columns)
    header = ",".join(f"{n}[{s.units[n]}]" if s.units[n] else n for n in names)
    row = ",".join("%d" if s.columns[n].dtype.kind in "iu" else "%r" for n in names)
    columns = [s.columns[n].tolist() for n in names]
    with atomic_file(path) as f:
        f.write(header + "\n")
        f.writelines(row % values + "\n" for values in zip(*columns))
