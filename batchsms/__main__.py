"""`python -m batchsms`: the same entry point as the console script."""

from batchsms.cli import main

raise SystemExit(main())
