"""`python -m batchsms.simulator`: the simulator alone, same options as `batchsms simulator`."""

from batchsms.simulator.cli import main

raise SystemExit(main())
