"""tiny-cuda-nn (``tinycudann``) backend of the hash-grid encoding, imported lazily (CUDA only).

Our :class:`~neural3d.fields.hashgrid.HashGridEncoding` stores its table as tcnn's flat ``params`` vector
(same level table, row order and feature order, see :mod:`neural3d.fields.hashgrid`), so moving a trained
grid between backends is a plain copy of the flat vector: :func:`copy_params_to_tcnn` and
:func:`copy_params_from_tcnn`. :func:`tcnn_encode` runs tcnn's kernel on *our* parameter tensor (the tcnn
module is a cached helper that shares it), so the optimiser and checkpoints see a single ``params``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_MODULES: dict = {}


def make_tcnn_encoding(encoding: nn.Module, *, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A ``tinycudann.Encoding`` with ``encoding.tcnn_config()`` (3 inputs); needs CUDA and tinycudann."""
    import tinycudann as tcnn

    return tcnn.Encoding(n_input_dims=3, encoding_config=encoding.tcnn_config(), dtype=dtype)


def _check_sizes(encoding: nn.Module, tcnn_module: nn.Module) -> None:
    n_ours, n_theirs = encoding.params.numel(), tcnn_module.params.numel()
    if n_ours != n_theirs:
        raise ValueError(
            f"tcnn.py: parameter counts differ (ours {n_ours}, tcnn {n_theirs}); "
            f"build the tcnn module from encoding.tcnn_config()"
        )


@torch.no_grad()
def copy_params_to_tcnn(encoding: nn.Module, tcnn_module: nn.Module) -> None:
    """Copy a :class:`HashGridEncoding`'s flat ``params`` [n_params] into a tcnn ``Encoding``'s ``params``."""
    _check_sizes(encoding, tcnn_module)
    tcnn_module.params.copy_(encoding.params.reshape(-1).to(tcnn_module.params))


@torch.no_grad()
def copy_params_from_tcnn(encoding: nn.Module, tcnn_module: nn.Module) -> None:
    """Copy a tcnn ``Encoding``'s ``params`` [n_params] into a :class:`HashGridEncoding`'s ``params``."""
    _check_sizes(encoding, tcnn_module)
    encoding.params.copy_(tcnn_module.params.reshape(-1).to(encoding.params))


def tcnn_encode(encoding: nn.Module, positions01: Tensor) -> Tensor:
    """[n, 3] positions in [0, 1]^3 -> [n, n_levels * F] fp32 features from tcnn's kernel on ``encoding.params``."""
    key = (id(encoding), str(positions01.device))
    module = _MODULES.get(key)
    if module is None:
        module = make_tcnn_encoding(encoding).to(positions01.device)
        _MODULES[key] = module
    module.params = encoding.params  # share the one trainable tensor (registers it in the helper only)
    return module(positions01.contiguous()).float()
