import sys

from torchlite.cli import main

sys.exit(main())
