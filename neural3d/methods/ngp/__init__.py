"""Instant-NGP-style hash-grid method (``method: ngp``).

Samplers: grid, occupancy, proposal, importance and uniform.
"""
