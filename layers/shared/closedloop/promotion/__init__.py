"""Route 8: versions promoted from stage to stage across accounts, and their changes recorded."""
