"""Performance and cost measurements of cascata, and the baseline they are compared with."""
