"""Prototype: a convolution whose gradients XLA:CPU runs fast inside loops.

What it works around (found with ``jax.profiler`` and ``--xla_dump_to``):
XLA:CPU rewrites a convolution into its fast (Eigen / library) form only when
its dimension numbers are canonical (``b01f_01io->b01f``), and it makes the
gradient convolutions of ``lax.conv_general_dilated`` canonical in its
``convolution-canonicalization`` pass, which visits the entry computation
only. Inside a ``while`` loop (``jax.lax.scan``: the k discriminator updates of
``GAN.step``, ``ganjax.loops.scan_steps``) the kernel gradient
(``f01b_i01o->01bf``) and the input gradient (``b01f_01oi->b01f``) stay
non-canonical and fall back to a naive loop emitter: the kernel gradient of
DCGAN's second discriminator conv (14x14x64 -> 7x7x128, batch 128) takes
~2.5 s in a scan vs ~0.1 s outside (``python -m benchmarks.conv_vjp``).

``conv_general_dilated`` below is ``lax.conv_general_dilated`` with a
``custom_vjp`` whose backward pass is written as two convolutions that are
canonical by construction (explicit transposes of the operands instead of
non-canonical dimension numbers): the same sums, bit-for-bit equal here, and
fast in and out of loops. Pass it to flax as
``nn.Conv(..., conv_general_dilated=conv_general_dilated)``.
``CanonicalVJPDCGANDiscriminator`` is ``ganjax.models.DCGANDiscriminator``
with it (same parameters); the benchmark uses it to measure what the change
would give in the step.

One more thing is needed in ``GAN.step``: a discriminator without batch
statistics is applied per example under ``jax.vmap`` (for per-example dropout
keys), and vmap of a ``custom_vjp`` turns the kernel gradient into one
convolution per example plus a sum: the largest op of the step by far
(``python -m benchmarks.profile_step --variant canonical``).
``WholeBatch`` routes the discriminator to ``GAN._discriminate``'s
whole-batch path (a dummy ``batch_stats`` entry) to measure the combination;
in the library this would be a switch in ``GAN._discriminate`` for models
without dropout.
"""

from __future__ import annotations

import argparse
import functools
import time
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ganjax.models.dcgan import DCGANDiscriminator, num_upsamplings


def _canonical_specs(nd: int):
  spatial = "HWD"[:nd]
  return ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, strides, pads, precision):
  nd = x.ndim - 2
  return lax.conv_general_dilated(x, w, strides, pads, precision=precision,
                                  dimension_numbers=_canonical_specs(nd))


def _conv_fwd(x, w, strides, pads, precision):
  return _conv(x, w, strides, pads, precision), (x, w)


def _conv_bwd(strides, pads, precision, res, dy):
  x, w = res
  nd = x.ndim - 2
  dn = _canonical_specs(nd)
  ks = w.shape[:nd]
  # Kernel gradient: the input's channels play the batch, its batch the input
  # features, so that the convolution is canonical (b01f_01io->b01f):
  #   dw[k, ci, co] = sum_{n, o} x_pad[n, s*o + k, ci] * dy[n, o, co].
  xt = jnp.moveaxis(x, (0, -1), (-1, 0))            # [ci, *spatial, n]
  dyt = jnp.moveaxis(dy, 0, -2)                     # [*out_spatial, n, co]
  dw = lax.conv_general_dilated(xt, dyt, (1,) * nd, pads, rhs_dilation=strides,
                                precision=precision, dimension_numbers=dn)
  dw = dw[(slice(None),) + tuple(slice(0, k) for k in ks)]  # [ci, *ks, co]
  dw = jnp.moveaxis(dw, 0, -2).astype(w.dtype)      # [*ks, ci, co]
  # Input gradient: dy dilated by the strides, correlated with the spatially
  # flipped kernel whose in/out channels are swapped explicitly.
  wt = jnp.flip(w, tuple(range(nd))).swapaxes(-1, -2)
  in_pads = []
  for n, k, s, (lo, _), o in zip(x.shape[1:-1], ks, strides, pads,
                                 dy.shape[1:-1]):
    dilated = s * (o - 1) + 1
    in_pads.append((k - 1 - lo, n + lo - dilated))
  dx = lax.conv_general_dilated(dy, wt, (1,) * nd, in_pads,
                                lhs_dilation=strides, precision=precision,
                                dimension_numbers=dn).astype(x.dtype)
  return dx, dw


_conv.defvjp(_conv_fwd, _conv_bwd)


def _is_channels_last(dimension_numbers, nd: int) -> bool:
  if dimension_numbers is None:
    return False
  want = lax.conv_dimension_numbers((1,) * (nd + 2), (1,) * (nd + 2),
                                    _canonical_specs(nd))
  got = lax.conv_dimension_numbers((1,) * (nd + 2), (1,) * (nd + 2),
                                   dimension_numbers)
  return got == want


def conv_general_dilated(lhs, rhs, window_strides: Sequence[int], padding: Any,
                         lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision=None,
                         preferred_element_type=None):
  """``lax.conv_general_dilated`` with a backward pass that XLA:CPU runs fast.

  Channels-last (``NHWC``/``HWIO``), undilated, ungrouped convolutions (what
  ``flax.linen.Conv`` builds) take the custom-VJP path; anything else is
  passed to ``lax.conv_general_dilated`` unchanged.
  """
  nd = lhs.ndim - 2
  plain = (
      any(d != 1 for d in (lhs_dilation or (1,) * nd))
      or any(d != 1 for d in (rhs_dilation or (1,) * nd))
      or feature_group_count != 1 or batch_group_count != 1
      or preferred_element_type is not None
      or not _is_channels_last(dimension_numbers, nd))
  if plain:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type)
  strides = tuple(int(s) for s in window_strides)
  if isinstance(padding, str):
    pads = lax.padtype_to_pads(lhs.shape[1:-1], rhs.shape[:nd], strides,
                               padding)
  else:
    pads = padding
  pads = tuple((int(lo), int(hi)) for lo, hi in pads)
  return _conv(lhs, rhs, strides, pads, precision)


class CanonicalVJPDCGANDiscriminator(DCGANDiscriminator):
  """``DCGANDiscriminator`` whose convolutions use ``conv_general_dilated`` above.

  Same fields, parameters and outputs; only the gradients are computed in a
  form that is fast inside ``jax.lax.scan`` on XLA:CPU.
  """

  @nn.compact
  def __call__(self, x, train: bool):
    n = num_upsamplings(self.image_shape)

    def layer(module, y):
      if self.spectral_norm:
        return nn.SpectralNorm(module)(y, update_stats=train)
      return module(y)

    for i in range(n):
      use_bn = self.batch_norm and i > 0
      x = layer(nn.Conv(self.base_features * 2 ** i, (4, 4), strides=(2, 2),
                        padding='SAME', use_bias=not use_bn,
                        kernel_init=self.kernel_init, dtype=self.dtype,
                        conv_general_dilated=conv_general_dilated), x)
      if use_bn:
        x = nn.BatchNorm(use_running_average=not train, axis_name=self.axis_name,
                         momentum=self.momentum, epsilon=self.epsilon,
                         dtype=self.dtype)(x)
      x = nn.leaky_relu(x, self.negative_slope)
    x = x.reshape((x.shape[0], -1))
    x = layer(nn.Dense(1, kernel_init=self.kernel_init, dtype=self.dtype), x)
    return x[:, 0]


class WholeBatch(nn.Module):
  """Wraps a discriminator so that ``GAN.step`` applies it to whole batches.

  Benchmark-only shim: a dummy ``batch_stats`` variable makes
  ``GAN._discriminate`` take its batch-statistics path (one call on the real
  batch, one on the fake batch) instead of ``vmap`` over examples. The
  wrapped model's parameters sit under ``params['inner']``.
  """
  inner: nn.Module

  @nn.compact
  def __call__(self, x, train: bool = True):
    self.variable('batch_stats', 'unused', lambda: jnp.zeros((), jnp.float32))
    return self.inner(x, train)


def canonical_vjp_discriminator(d: DCGANDiscriminator
                                ) -> CanonicalVJPDCGANDiscriminator:
  """The same discriminator (same fields) with the fast-gradient convolution."""
  fields = {f: getattr(d, f) for f in d.__dataclass_fields__
            if f not in ('parent', 'name')}
  return CanonicalVJPDCGANDiscriminator(**fields)


def main():
  """Times the kernel+input gradient of D's 14x14x64 -> 7x7x128 conv, in and out of a scan."""
  parser = argparse.ArgumentParser(description=main.__doc__)
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  x = jax.random.normal(jax.random.key(0), (128, 14, 14, 64))
  w = jax.random.normal(jax.random.key(1), (4, 4, 64, 128)) * 0.02
  dn = ('NHWC', 'HWIO', 'NHWC')
  convs = {
      'lax': lambda x, w: lax.conv_general_dilated(x, w, (2, 2), 'SAME',
                                                   dimension_numbers=dn),
      'canonical_vjp': lambda x, w: conv_general_dilated(
          x, w, (2, 2), 'SAME', dimension_numbers=dn)}
  grad = lambda f: jax.grad(lambda x, w: jnp.sum(f(x, w) ** 2), (0, 1))
  fns = {}
  for name, f in convs.items():
    g = grad(f)
    fns[(name, 'jit')] = (jax.jit(g), (x, w))
    scanned = jax.jit(lambda w, xs, g=g: lax.scan(
        lambda c, x: (c, g(x, w)), 0, xs)[1])
    fns[(name, 'in scan')] = (scanned, (w, x[None]))
  ref = fns[('lax', 'jit')][0](x, w)
  new = fns[('canonical_vjp', 'jit')][0](x, w)
  err = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(ref, new))
  for f, a in fns.values():
    jax.block_until_ready(f(*a))
  times = {k: [] for k in fns}
  for _ in range(args.repeats):
    for k, (f, a) in fns.items():
      t = time.perf_counter()
      jax.block_until_ready(f(*a))
      times[k].append(time.perf_counter() - t)
  print(f'max |grad difference| = {err:.3g}')
  for k, v in times.items():
    print(f'{k[0]:14s} {k[1]:8s} {1e3 * np.median(v):9.1f} ms')


if __name__ == '__main__':
  main()
