"""`python -m daemon` is the same as the `codeswift` command."""

from daemon import interrupts

interrupts.handle_stop_signals()  # before the imports below: Ctrl-C is heard from here on
try:
    from daemon.cli import main
except KeyboardInterrupt:
    raise SystemExit(interrupts.exit_code()) from None

raise SystemExit(main())
