import multiprocessing
import sys

from app.serve.cli import main

# In the built binary a report process (app/reports/processes.py) is this executable
# started again: this runs the process's work instead of the command line.
multiprocessing.freeze_support()
sys.exit(main())
