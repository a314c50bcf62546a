"""`python -m minicluster`: the command line.

Ctrl-C while the command line is still being imported (a second or more on a busy machine)
ends the same way as Ctrl-C later on: exit 130 and one line, no traceback."""

import sys

try:
    from cli.main import main
except KeyboardInterrupt:
    sys.stderr.write("minicluster: interrupted.\n")
    sys.exit(130)

main()
