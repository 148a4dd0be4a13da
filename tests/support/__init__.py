"""Helpers shared by the test layers: real Lambda event shapes and fakes."""
