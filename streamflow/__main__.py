"""``python -m streamflow``."""

from streamflow.cli.main import main

raise SystemExit(main())
