"""Kernel + input gradient of one convolution, in and out of a ``lax.scan``.

    python -m benchmarks.conv_vjp [--repeats 5] [--second_order]

Times the gradient of DCGAN's second discriminator conv (14x14x64 ->
7x7x128, 4x4 stride 2, batch 128) with ``lax.conv_general_dilated`` and with
``ganjax.models.layers.conv_general_dilated`` (the same convolution with a
backward pass in canonical layout, the DCGAN discriminator's default), jitted
on its own and inside a one-iteration ``lax.scan`` (where XLA:CPU does not
canonicalise JAX's gradient convolutions: see the comment above
``_canonical_conv`` in ``ganjax/models/layers.py``). ``--second_order`` also
times the parameter gradient of a gradient penalty (``grad`` of ``grad``).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ganjax.models.layers import conv_general_dilated


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--second_order', action='store_true')
  args = parser.parse_args()
  x = jax.random.normal(jax.random.key(0), (128, 14, 14, 64))
  w = jax.random.normal(jax.random.key(1), (4, 4, 64, 128)) * 0.02
  dn = ('NHWC', 'HWIO', 'NHWC')
  convs = {
      'lax': lambda x, w: lax.conv_general_dilated(x, w, (2, 2), 'SAME',
                                                   dimension_numbers=dn),
      'canonical_vjp': lambda x, w: conv_general_dilated(
          x, w, (2, 2), 'SAME', dimension_numbers=dn)}
  grads = {'grad': lambda f: jax.grad(lambda x, w: jnp.sum(f(x, w) ** 2),
                                      (0, 1))}
  if args.second_order:
    # d/dw of the squared input-gradient norm, as in WGAN-GP / R1.
    grads['grad of grad'] = lambda f: lambda x, w: (x, jax.grad(
        lambda w: jnp.sum(jax.grad(lambda x: jnp.sum(f(x, w) ** 2))(x) ** 2))(
            w))
  fns = {}
  for order, make in grads.items():
    for name, f in convs.items():
      g = make(f)
      fns[(name, order, 'jit')] = (jax.jit(g), (x, w))
      scanned = jax.jit(lambda w, xs, g=g: lax.scan(
          lambda c, x: (c, g(x, w)), 0, xs)[1])
      fns[(name, order, 'in scan')] = (scanned, (w, x[None]))
  for order in grads:
    ref = fns[('lax', order, 'jit')][0](x, w)
    new = fns[('canonical_vjp', order, 'jit')][0](x, w)
    err = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(ref, new))
    print(f'{order}: max |difference| lax vs canonical_vjp = {err:.3g}')
  for f, a in fns.values():
    jax.block_until_ready(f(*a))
  times = {k: [] for k in fns}
  for _ in range(args.repeats):
    for k, (f, a) in fns.items():
      t = time.perf_counter()
      jax.block_until_ready(f(*a))
      times[k].append(time.perf_counter() - t)
  for k, v in times.items():
    print(f'{k[0]:14s} {k[1]:13s} {k[2]:8s} {1e3 * np.median(v):9.1f} ms')


if __name__ == '__main__':
  main()
