"""Lambda handlers: decode, delegate to the domain, apply effects, answer partial failures."""
