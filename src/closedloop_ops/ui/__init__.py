"""The approval console (`closedloop ui`): a local web page over the command line's functions."""
