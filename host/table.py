"""Plain-text tables for listings (`host sessions`, `host models`): padded columns, last one free."""


def print_table(rows):
    """Print rows of strings (the first is the header), each column padded to its widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
