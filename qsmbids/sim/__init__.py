"""Digital head phantom, forward simulation of multi-echo GRE, and the BIDS simulator."""
