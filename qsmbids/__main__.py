"""Allow ``python -m qsmbids``."""

from qsmbids.cli.main import main

raise SystemExit(main())
