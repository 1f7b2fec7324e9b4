"""`python -m optimodel.serve ARGS` runs the server without the main CLI (same flags as `optimodel serve`)."""

from optimodel.serve.cli import main

raise SystemExit(main())
