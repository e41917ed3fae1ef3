"""``python -m fluxfunc_common.cli``: the ``fluxfunc`` command."""

import sys

from fluxfunc_common.cli import main

sys.exit(main())
