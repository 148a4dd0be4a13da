"""`python -m cascata ...`: the command-line interface."""

from cascata.cli import main

raise SystemExit(main())
