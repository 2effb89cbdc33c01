"""closedloop operator tools: the command line, the local loop on an embedded AWS, synthetic data."""
