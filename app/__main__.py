import sys

from app.serve.cli import main

sys.exit(main())
