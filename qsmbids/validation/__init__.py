"""Validation on data qsmbids did not make.

* :mod:`qsmbids.validation.peer_heads`: head phantoms of qsmbids' design (anatomy,
  susceptibility, M0, R2*) forward-simulated by the peer simulator ``qsm-forward``
  (its dipole model, phase offset, shim, k-space sampling and noise), written as BIDS.
* :mod:`qsmbids.validation.scoring`: scores maps with the peer scorer ``qsm-ci`` plus
  the deep-grey-matter error per nucleus, and the truth-free checks used on real
  scanner data.

Both need the ``validation`` extra (``pip install qsmbids[validation]``); nothing in
the pipeline imports this package.
"""
