"""Instant-NGP-style hash-grid method (``method: ngp``) with grid, occupancy, proposal, importance and uniform sampling."""
