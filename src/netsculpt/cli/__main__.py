import sys

from netsculpt.cli import main

sys.exit(main())
