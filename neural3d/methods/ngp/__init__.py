"""Instant-NGP-style hash-grid method (``method: ngp``): grid, occupancy, proposal, importance, uniform sampling."""
