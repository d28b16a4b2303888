"""HTTP layer: one router module per REST resource; parse, call a service, render."""
