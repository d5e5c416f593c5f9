"""Command line: wiring only (the work lives in the modules it calls)."""

from worker.cli import main

raise SystemExit(main())
