"""``python -m verifier`` runs the command line."""

import os
import signal
import sys

# Ctrl-C before the command line has set up its own handling: one line, exit 130, no traceback
signal.signal(signal.SIGINT, lambda signum, frame: (os.write(2, b"verifier: interrupted\n"), os._exit(130)))

from verifier.cli import main  # noqa: E402

sys.exit(main())
