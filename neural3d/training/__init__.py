"""Training: one :class:`~neural3d.training.loop.Loop` for every task, its callbacks and the run directory.

``task`` (the :class:`~neural3d.training.task.TrainTask` protocol), ``loop``, ``callbacks``, ``run_dir`` (the
one reader and writer of run directories), ``scene_task`` and ``trainer`` (``neural3d train``), ``setup``,
``optim``, ``checkpoint`` (atomic files) and ``logger`` (CSV / TensorBoard).
"""
