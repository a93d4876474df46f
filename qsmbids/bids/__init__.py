"""BIDS discovery of multi-echo GRE runs and derivatives naming/writing."""
