"""SinNeRF single-view training (the ``sinnerf:`` section): see :mod:`neural3d.training.sinnerf.strategy`."""
