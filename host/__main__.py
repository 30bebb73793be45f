"""`python -m host`: the `host` command. A Ctrl-C while host.cli loads, before main guards, ends as one line too."""

import sys

try:
    from host.cli import main
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    raise SystemExit(130) from None

if __name__ == "__main__":  # a training candidate's process (spawn) imports this module too, and must not run it
    raise SystemExit(main())
