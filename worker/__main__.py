"""Command line: wiring only (the work lives in the modules it calls)."""

import sys

try:
    from worker.cli.main import main
except ModuleNotFoundError as exc:  # run by a Python without the project's dependencies
    print(
        f"error: {exc} in {sys.executable}: this Python does not have the worker's dependencies. "
        "Use the project's virtualenv (`make run` or `make test` creates .venv): "
        "`.venv/bin/python -m worker ...`, or `. .venv/bin/activate` first.",
        file=sys.stderr,
    )
    raise SystemExit(1) from None

raise SystemExit(main())
