import sys

from sm_train.cli import main

sys.exit(main())
