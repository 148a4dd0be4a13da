"""Sensor telemetry on cascata: readings validated, aggregated per device and minute, watched
for thresholds, served over HTTP. Built only on cascata's public API."""
