"""The payments pipeline's processors: pure domain logic and thin Lambda handlers."""
