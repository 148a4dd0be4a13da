"""cascata's local runtime: the pipeline on an in-process AWS emulator, no account, no Docker."""
