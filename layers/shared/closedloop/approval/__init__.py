"""Route 3: the approval gate — a versioned policy over a registered version's evidence."""
