"""`python -m host`: the `host` command. A Ctrl-C while host.cli loads, before main guards, ends as one line too."""

import sys

try:
    from host.cli import main
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
