"""Command line: argument parsing and the run loop."""
