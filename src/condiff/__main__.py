import sys

from condiff.cli.main import main

sys.exit(main())
