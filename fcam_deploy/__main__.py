"""``python -m fcam_deploy`` is the same as ``fcam``."""

import sys

from fcam_deploy.cli import main

sys.exit(main())
