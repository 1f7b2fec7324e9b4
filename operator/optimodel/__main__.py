"""`python -m optimodel` is the same as the `optimodel` console script."""

from optimodel.cli import main

raise SystemExit(main())
