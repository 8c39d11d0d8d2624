"""Interoperability: export to and import from the Neuromorphic Intermediate Representation (NIR).

NIR (Pedersen et al., Nature Communications 2024) is the graph format snnTorch, Norse, Sinabs,
SpikingJelly, Lava and neuromorphic chips read. Needs the optional ``nir`` package
(``pip install 'spikeshield[nir]'``).

>>> from spikeshield.interop import to_nir, write_nir, from_nir      # doctest: +SKIP
>>> write_nir(to_nir(model, dt=1e-3), "model.nir")                   # doctest: +SKIP
>>> same = from_nir("model.nir")                                     # doctest: +SKIP

The exact parameter mapping (discrete-time spikeshield → continuous-time NIR, with ``dt``) is in
:mod:`spikeshield.interop.neuron_map`.
"""

from spikeshield.interop._nir import NIRError
from spikeshield.interop.neuron_map import REFUSED, neuron_from_nir, neuron_to_nir
from spikeshield.interop.nir_export import fold_batchnorm, to_nir, write_nir
from spikeshield.interop.nir_import import from_nir, read_nir

__all__ = [
    "REFUSED",
    "NIRError",
    "fold_batchnorm",
    "from_nir",
    "neuron_from_nir",
    "neuron_to_nir",
    "read_nir",
    "to_nir",
    "write_nir",
]
