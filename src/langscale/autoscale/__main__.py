"""``python -m langscale.autoscale simulate ...``"""

import sys

from langscale.autoscale.cli import main

sys.exit(main())
