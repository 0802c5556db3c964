"""`python -m daemon` is the same as the `codeswift` command."""

from daemon.cli import main

raise SystemExit(main())
