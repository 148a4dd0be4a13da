"""The baseline: the whole payments pipeline the way the Powertools documentation does it.

A comparison, not product code (nothing deploys it): `pipeline` declares the same topology,
input streams, views and batch sizes as cascata's declaration; each function (`validate`,
`postings`, `balances`, `profiles`, `fraud_detect`, `windows`, `windows_close`) uses
BatchProcessor, `@idempotent_function` per event and one write per event per view item
(`app` holds the shared skeleton). Parsing and validation are cascata's own domain functions,
so both sides accept and refuse exactly the same events.
"""
