"""Layers of the ganjax models: batch-aware layers for data parallelism, and fast gradients on XLA:CPU.

``Dropout`` draws each example's mask from the example's global index, and
``MinibatchStd`` (StyleGAN's minibatch standard deviation) forms its groups
over the global batch: under ``ganjax.parallel`` (``axis_name`` set) both
compute what they compute on one device, in one batched call.

``ConvTranspose`` computes exactly what :class:`flax.linen.ConvTranspose`
computes (same parameters, same initialisation, same output up to float
rounding) in sub-pixel form, without the input-dilated (``lhs_dilation``)
convolution whose kernel gradient takes a slow path in XLA's CPU backend.

``conv_general_dilated`` is ``lax.conv_general_dilated`` (channels last) with
a backward pass made of convolutions that XLA:CPU runs fast inside loops too;
pass it to ``flax.linen.Conv(conv_general_dilated=...)``.
"""
from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax.linen import initializers
from flax.linen.dtypes import promote_dtype
from flax.linen.linear import canonicalize_padding, default_kernel_init
from flax.linen.module import Module, compact, merge_param
from jax import lax

from ganjax import parallel

Array = Any


# ----------------------------------------------------------------------------
# Layers that see the batch


class Dropout(Module):
  """Dropout whose mask of an example depends on that example's global index only.

  ``flax.linen.Dropout`` draws one mask for the whole batch from one key, so
  the mask of an example depends on where it sits in the batch, and under
  data parallelism on how the batch is split. Here the mask of the example
  at global batch index ``i`` is drawn from ``fold_in(key, i)``, with ``i``
  the local index plus ``axis_index * local_batch``
  (``ganjax.parallel.global_index``): the same masks whatever the device
  count, in one batched call. ``ganjax.GAN`` passes every call of a model one
  ``'dropout'`` key, the same on every device.

  Attributes:
    rate: the probability of dropping a unit; kept units are scaled by
      ``1 / (1 - rate)``.
    axis_name: the mapped axis the batch is split over (the model's
      ``axis_name``, set by ``GAN.parallel``), None on one device.
    deterministic: if True, the identity (may be given at call time).
    rng_collection: the rng collection the key comes from.
  """
  rate: float
  axis_name: str | None = None
  deterministic: bool | None = None
  rng_collection: str = 'dropout'

  @compact
  def __call__(self, inputs: Array, deterministic: bool | None = None) -> Array:
    """``[B, ...] -> [B, ...]``, each example with its own mask."""
    deterministic = merge_param('deterministic', self.deterministic,
                                deterministic)
    if deterministic or self.rate == 0.0:
      return inputs
    if self.rate == 1.0:
      return jnp.zeros_like(inputs)
    keep = 1.0 - self.rate
    key = self.make_rng(self.rng_collection)
    index = parallel.global_index(inputs.shape[0], self.axis_name)
    mask = jax.vmap(lambda i: jax.random.bernoulli(
        jax.random.fold_in(key, i), keep, inputs.shape[1:]))(index)
    return lax.select(mask, inputs / keep, jnp.zeros_like(inputs))


class MinibatchStd(Module):
  """StyleGAN's minibatch standard deviation: ``[N, ..., C] -> [N, ..., C + F]``.

  Tells the discriminator how varied the samples of its batch are (a
  remedy for mode collapse). The batch is split into groups of ``G``
  examples (example ``n`` in group ``n mod (N / G)``, as StyleGAN2's
  reshape does); within each group the standard deviation of every feature
  is taken over the G examples, averaged over the positions and over the
  channels of each of ``F`` channel groups, and appended to every example
  of the group as ``F`` constant channels.

  Under ``ganjax.parallel`` with ``axis_name`` set (``GAN.parallel`` sets
  the model's), the batch is gathered from every device first
  (``all_gather``), the groups are formed over the global batch and each
  device keeps its examples: what one device computes, gradients included.
  Without ``axis_name`` the groups are formed on each device's examples.

  References:
    Karras et al., 2018, Progressive Growing of GANs, Section 3
    (https://arxiv.org/abs/1710.10196); Karras et al., 2020, Analyzing and
    Improving the Image Quality of StyleGAN, its discriminator
    (https://arxiv.org/abs/1912.04958): group size 4, one feature.

  Attributes:
    group_size: G, examples per group (``min(G, N)`` is used; N, the global
      batch, must be a multiple of it).
    num_features: F, channel groups, each giving one appended channel.
    axis_name: the mapped axis the batch is split over, or None.
    epsilon: added to the variance under the square root.
  """
  group_size: int = 4
  num_features: int = 1
  axis_name: str | None = None
  epsilon: float = 1e-8

  @compact
  def __call__(self, x: Array) -> Array:
    """``x`` ``[N, *spatial, C]`` (channels last) -> ``[N, *spatial, C + F]``."""
    batch = x
    if self.axis_name is not None:
      batch = lax.all_gather(x, self.axis_name, axis=0, tiled=True)
    n, channels = batch.shape[0], batch.shape[-1]
    g, f = min(self.group_size, n), self.num_features
    if n % g or channels % f:
      raise ValueError(
          f'MinibatchStd(group_size={self.group_size}, num_features={f}): the '
          f'batch of {n} examples must be a multiple of the group size '
          f'{g}, and the {channels} channels a multiple of num_features.')
    y = batch.astype(jnp.float32).reshape(
        (g, n // g) + batch.shape[1:-1] + (f, channels // f))
    y = y - jnp.mean(y, axis=0)
    std = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + self.epsilon)
    std = jnp.mean(std, axis=tuple(range(1, std.ndim - 2)) + (-1,))  # [N/G, F]
    std = jnp.tile(std, (g, 1))                                       # [N, F]
    if self.axis_name is not None:
      std = std[parallel.global_index(x.shape[0], self.axis_name)]
    std = jnp.broadcast_to(std.reshape((x.shape[0],) + (1,) * (x.ndim - 2)
                                       + (f,)), x.shape[:-1] + (f,))
    return jnp.concatenate([x, std.astype(x.dtype)], axis=-1)


# ----------------------------------------------------------------------------
# Convolution with a canonical-layout backward pass
#
# XLA:CPU runs a convolution with its fast (Eigen) kernels only when its
# dimension numbers are canonical, ``b01f_01io->b01f`` (NHWC, HWIO). The
# gradients of ``lax.conv_general_dilated`` are convolutions with permuted
# dimension numbers (kernel gradient ``f01b_i01o->01bf``, input gradient
# ``b01f_01oi->b01f``) that the ``convolution-canonicalization`` pass rewrites
# into canonical ones only in the entry computation: inside a ``while`` loop
# (``lax.scan``: the k discriminator updates of ``GAN.step``,
# ``ganjax.loops.scan_steps``) they run in a naive loop emitter, ~10-25x
# slower (found with ``jax.profiler`` and ``--xla_dump_to``; measured by
# ``python -m benchmarks.conv_vjp``). Below, the same gradient convolutions
# (the transpose rules of ``jax._src.lax.convolution``) are written with
# explicit transposes of their operands instead, so that every convolution
# is canonical by construction, in and out of loops.


def _channels_last_specs(nd: int) -> tuple[str, str, str]:
  spatial = 'HWD'[:nd]
  return 'N' + spatial + 'C', spatial + 'IO', 'N' + spatial + 'C'


def _dilate(size: int, d: int) -> int:
  return 0 if size == 0 else (size - 1) * d + 1


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _canonical_conv(x, w, strides, pads, lhs_dilation, rhs_dilation,
                    precision):
  """``[N, *spatial, I] x [*k, I, O] -> [N, *out, O]``, explicit padding."""
  return lax.conv_general_dilated(
      x, w, strides, pads, lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation,
      dimension_numbers=_channels_last_specs(x.ndim - 2), precision=precision)


def _canonical_conv_fwd(x, w, strides, pads, lhs_dilation, rhs_dilation,
                        precision):
  y = _canonical_conv(x, w, strides, pads, lhs_dilation, rhs_dilation,
                      precision)
  return y, (x, w)


def _canonical_conv_bwd(strides, pads, lhs_dilation, rhs_dilation, precision,
                        res, dy):
  """Input and kernel gradients, themselves ``_canonical_conv`` calls.

  Being built from ``_canonical_conv`` (plus flips and transposes), the
  backward pass is differentiable again, with canonical convolutions: second
  order gradients (gradient penalties) stay exact and fast.
  """
  x, w = res
  nd = x.ndim - 2
  ks = w.shape[:nd]
  n_d = [_dilate(n, a) for n, a in zip(x.shape[1:-1], lhs_dilation)]
  k_d = [_dilate(k, r) for k, r in zip(ks, rhs_dilation)]
  o_d = [_dilate(o, s) for o, s in zip(dy.shape[1:-1], strides)]
  # Input gradient: dy dilated by the strides, correlated with the spatially
  # flipped kernel whose in/out channels are swapped explicitly.
  wt = jnp.flip(w, tuple(range(nd))).swapaxes(-1, -2).astype(dy.dtype)
  dx_pads = tuple((kd - lo - 1, nn + kd - 1 - od - (kd - lo - 1))
                  for nn, kd, od, (lo, _) in zip(n_d, k_d, o_d, pads))
  dx = _canonical_conv(dy, wt, lhs_dilation, dx_pads, strides, rhs_dilation,
                       precision)
  # Kernel gradient: the input's channels play the batch and its batch the
  # input features, so that the convolution is canonical:
  #   dw[t, i, o] = sum_{n, p} x_pad[n, s * p + r * t, i] * dy[n, p, o].
  xt = jnp.moveaxis(x, (0, -1), (-1, 0)).astype(dy.dtype)   # [I, *spatial, N]
  dyt = jnp.moveaxis(dy, 0, -2)                              # [*out, N, O]
  dw_pads = tuple((lo, od - nn + kd - 1 - lo)
                  for nn, kd, od, (lo, _) in zip(n_d, k_d, o_d, pads))
  dw = _canonical_conv(xt, dyt, rhs_dilation, dw_pads, lhs_dilation, strides,
                       precision)                            # [I, *k, O]
  dw = jnp.moveaxis(dw, 0, -2)
  return dx.astype(x.dtype), dw.astype(w.dtype)


_canonical_conv.defvjp(_canonical_conv_fwd, _canonical_conv_bwd)


def _as_tuple(v, nd: int, name: str) -> tuple[int, ...]:
  if v is None:
    return (1,) * nd
  v = tuple(int(d) for d in v)
  if len(v) != nd:
    raise ValueError(f'conv_general_dilated: {name} needs {nd} entries (one '
                     f'per spatial dimension), got {v}.')
  return v


def conv_general_dilated(lhs, rhs, window_strides: Sequence[int], padding: Any,
                         lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None,
                         feature_group_count: int = 1,
                         batch_group_count: int = 1, precision: Any = None,
                         preferred_element_type: Any = None) -> Array:
  """``lax.conv_general_dilated`` with a backward pass that XLA:CPU runs fast.

  A drop-in for the channels-last convolutions ``flax.linen.Conv`` builds:
  ``nn.Conv(..., conv_general_dilated=conv_general_dilated)``. The forward
  pass is the same ``lax.conv_general_dilated`` call; the gradients are the
  same convolutions as JAX's, written so that their dimension numbers are
  canonical (fast in XLA:CPU inside ``lax.scan`` too, where JAX's are ~10x
  slower). Differentiable to any order in reverse mode (``jax.grad`` of
  ``jax.grad``: gradient penalties) and under ``vmap``, ``pmap`` and
  ``shard_map``; forward mode (``jax.jvp``, ``jax.jacfwd``) is not supported
  (a ``jax.custom_vjp``).

  Args:
    lhs: ``[N, *spatial, in]`` (1-3 spatial dimensions).
    rhs: ``[*kernel, in / feature_group_count, out]``.
    window_strides: one stride per spatial dimension.
    padding: ``'SAME'``, ``'SAME_LOWER'``, ``'VALID'`` or ``(low, high)``
      pairs, as in ``lax.conv_general_dilated``.
    lhs_dilation, rhs_dilation: input and kernel dilation (default 1).
    dimension_numbers: must be channels last: ``('NHWC', 'HWIO', 'NHWC')`` or
      the equivalent (what flax passes); 1-D and 3-D alike.
    feature_group_count: > 1 is computed as that many ungrouped convolutions
      of channel slices, concatenated (same sums).
    batch_group_count: must be 1.
    precision: passed to every convolution, forward and backward.
    preferred_element_type: must be None.

  Returns:
    ``[N, *out_spatial, out]``, what ``lax.conv_general_dilated`` returns.

  Raises:
    NotImplementedError: for other layouts, ``batch_group_count > 1`` or a
      ``preferred_element_type``; use ``lax.conv_general_dilated`` for those.
  """
  nd = lhs.ndim - 2
  if not 1 <= nd <= 3:
    raise NotImplementedError(
        f'conv_general_dilated supports 1-3 spatial dimensions, got input of '
        f'shape {lhs.shape}.')
  specs = _channels_last_specs(nd)
  want = lax.conv_dimension_numbers(lhs.shape, rhs.shape, specs)
  got = (None if dimension_numbers is None else
         lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers))
  if got != want:
    raise NotImplementedError(
        f'conv_general_dilated supports channels-last convolutions only '
        f'(dimension_numbers {specs} or equivalent), got {dimension_numbers!r}'
        ' (None means NCHW); use lax.conv_general_dilated.')
  if batch_group_count != 1:
    raise NotImplementedError(
        f'conv_general_dilated: batch_group_count must be 1, got '
        f'{batch_group_count}; use lax.conv_general_dilated.')
  if preferred_element_type is not None:
    raise NotImplementedError(
        'conv_general_dilated: preferred_element_type is not supported; use '
        'lax.conv_general_dilated.')
  strides = _as_tuple(window_strides, nd, 'window_strides')
  lhs_dilation = _as_tuple(lhs_dilation, nd, 'lhs_dilation')
  rhs_dilation = _as_tuple(rhs_dilation, nd, 'rhs_dilation')
  groups = int(feature_group_count)
  if groups < 1 or lhs.shape[-1] != groups * rhs.shape[-2] \
      or rhs.shape[-1] % groups:
    raise ValueError(
        f'conv_general_dilated: feature_group_count={feature_group_count} '
        f'does not fit input features {lhs.shape[-1]}, kernel {rhs.shape} '
        '(needs in = groups * kernel in, out divisible by groups).')
  if isinstance(padding, str):
    if any(a != 1 for a in lhs_dilation):
      raise ValueError('conv_general_dilated: string padding is not '
                       'supported with lhs_dilation; give (low, high) pairs.')
    k_d = [_dilate(k, r) for k, r in zip(rhs.shape[:nd], rhs_dilation)]
    padding = lax.padtype_to_pads(lhs.shape[1:-1], k_d, strides, padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  if len(pads) != nd:
    raise ValueError(f'conv_general_dilated: padding needs {nd} pairs, got '
                     f'{padding}.')
  conv = lambda x, w: _canonical_conv(x, w, strides, pads, lhs_dilation,
                                      rhs_dilation, precision)
  if groups == 1:
    return conv(lhs, rhs)
  xs = jnp.split(lhs, groups, axis=-1)
  ws = jnp.split(rhs, groups, axis=-1)
  return jnp.concatenate([conv(x, w) for x, w in zip(xs, ws)], axis=-1)


def _conv_transpose_padding(k: int, s: int, padding: str) -> tuple[int, int]:
  """Padding of the dilated input used by ``lax.conv_transpose``.

  Mirrors ``jax._src.lax.convolution._conv_transpose_padding`` for string
  padding; explicit pairs are used as given (flax passes them with
  ``use_consistent_padding=False``, i.e. as padding of the dilated input).
  """
  if padding == 'SAME':
    pad_len = k + s - 2
    pad_a = k - 1 if s > k - 1 else int(np.ceil(pad_len / 2))
  elif padding == 'VALID':
    pad_len = k + s - 2 + max(k - s, 0)
    pad_a = k - 1
  else:
    raise ValueError(f'Invalid padding mode: {padding}')
  return pad_a, pad_len - pad_a


class _PhasePlan:
  """Sub-pixel bookkeeping for one spatial dimension.

  ``lax.conv_transpose`` (``transpose_kernel=False``) computes, with the input
  ``x`` of length ``n`` dilated by ``s`` and padded by ``(lo, hi)``::

      y[o] = sum_t x[(o + t - lo) / s] * K[t]   over t with (o + t - lo) % s == 0

  For output ``o = s*q + r`` (phase ``r``) the taps are ``t = c_r + s*m`` with
  ``c_r = (lo - r) % s`` and they read ``x[q + d_r + m]`` with
  ``d_r = (c_r + r - lo) / s``. So phase ``r`` is an ordinary stride-1
  correlation of ``x`` with the sub-kernel ``K[c_r::s]`` starting at offset
  ``d_r``. All phases share one convolution over ``x`` padded to start at
  ``d_min = min_r d_r``; phase ``r`` then reads its window at ``d_r - d_min``.
  """

  def __init__(self, n: int, k: int, s: int, lo: int, hi: int):
    self.k, self.s = k, s
    self.out = (n - 1) * s + 1 + lo + hi - k + 1
    if self.out <= 0:
      raise ValueError(
          f'ConvTranspose output would be empty: input length {n}, kernel {k},'
          f' stride {s}, padding ({lo}, {hi}).')
    self.starts = [(lo - r) % s for r in range(s)]
    self.taps = [len(range(c, k, s)) for c in self.starts]
    self.m = max(self.taps)
    d = [(c + r - lo) // s for r, c in enumerate(self.starts)]
    live = [dr for dr, t in zip(d, self.taps) if t > 0]
    # A phase without taps (kernel smaller than stride) is all zeros; any
    # offset in range will do.
    d = [dr if t > 0 else min(live) for dr, t in zip(d, self.taps)]
    self.d_min = min(d)
    self.offsets = [dr - self.d_min for dr in d]
    self.q = -(-self.out // s)  # outputs per phase, ceil(out / s)
    conv_out = self.q + max(self.offsets)
    # Padded input covers x[d_min : d_min + conv_out + m - 1].
    self.pad_lo = -self.d_min
    self.pad_hi = conv_out + self.m - 1 - n - self.pad_lo


def _phase_kernel(kernel: Array, plans: Sequence[_PhasePlan]) -> Array:
  """Rearranges ``(k_1..k_d, in, out)`` into ``(m_1..m_d, in, s_1*..*s_d*out)``."""
  nd = len(plans)
  w = kernel
  for axis, p in enumerate(plans):
    pieces = []
    for c, t in zip(p.starts, p.taps):
      if t == 0:  # kernel smaller than stride: this phase has no taps
        shape = list(w.shape)
        shape[axis] = p.m
        pieces.append(jnp.zeros(shape, w.dtype))
        continue
      piece = lax.slice_in_dim(w, c, p.k, stride=p.s, axis=axis)
      if t < p.m:
        pad = [(0, 0)] * w.ndim
        pad[axis] = (0, p.m - t)
        piece = jnp.pad(piece, pad)
      pieces.append(piece)
    # Phase axes are appended after the output-feature axis, in spatial order.
    w = jnp.stack(pieces, axis=-1)
  # w: (m_1..m_d, in, out, s_1..s_d) -> (m_1..m_d, in, s_1..s_d, out)
  perm = tuple(range(nd + 1)) + tuple(range(nd + 2, 2 * nd + 2)) + (nd + 1,)
  w = jnp.transpose(w, perm)
  return w.reshape(w.shape[:nd + 1] + (-1,))


def conv_transpose_phase(
    inputs: Array,
    kernel: Array,
    strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    precision=None,
    preferred_element_type=None,
    impl: str = 'auto',
    conv_general_dilated=None,
) -> Array:
  """``lax.conv_transpose`` (NHWC/HWIO, ``transpose_kernel=False``) via one ordinary conv.

  Args:
    inputs: ``[N, *spatial, in]``.
    kernel: ``[*kernel_size, in, out]``.
    strides: one stride per spatial dimension.
    padding: ``'SAME'``, ``'VALID'`` or ``(low, high)`` pairs, interpreted as
      ``lax.conv_transpose`` does (pairs pad the dilated input).
    precision: passed to ``lax.conv_general_dilated``.
    preferred_element_type: passed to ``lax.conv_general_dilated``.
    impl: how the phase convolution is computed: ``'matmul'`` (im2col and one
      matmul), ``'conv'`` (one stride-1 ``conv_general_dilated``), ``'lax'``
      (no phase form: plain ``lax.conv_transpose``), or ``'auto'``, which picks
      the fastest measured on XLA:CPU (see ``benchmarks/conv_transpose_layers.py``).
    conv_general_dilated: the convolution of the ``'conv'`` and ``'lax'``
      impls (default ``lax.conv_general_dilated``), e.g. this module's
      :func:`conv_general_dilated`, whose gradients are fast inside loops.

  Returns:
    ``[N, *out_spatial, out]``, equal to ``lax.conv_transpose`` on the same
    arguments up to float rounding.
  """
  if impl not in ('auto', 'lax', 'conv', 'matmul'):
    raise ValueError(f"impl must be 'auto', 'lax', 'conv' or 'matmul', got {impl!r}")
  nd = inputs.ndim - 2
  ks = kernel.shape[:nd]
  features = kernel.shape[-1]
  if impl == 'auto':
    # Measured on a 2-core x86 CPU (benchmarks/conv_transpose_layers.py): with
    # one output channel or stride 1 the kernel gradient of lax.conv_transpose
    # is cheap and it wins; otherwise the phase form is several times faster
    # to differentiate, as a matmul once the phase conv has >= 64 channels.
    if features == 1 or all(s == 1 for s in strides):
      impl = 'lax'
    elif math.prod(strides) * features >= 64:
      impl = 'matmul'
    else:
      impl = 'conv'
  if isinstance(padding, str):
    pads = [_conv_transpose_padding(k, s, padding) for k, s in zip(ks, strides)]
  else:
    pads = [tuple(p) for p in padding]
  spec = {1: ('NHC', 'HIO', 'NHC'), 2: ('NHWC', 'HWIO', 'NHWC'),
          3: ('NHWDC', 'HWDIO', 'NHWDC')}[nd]
  conv_kw = dict(dimension_numbers=spec, precision=precision)
  if preferred_element_type is not None:
    conv_kw['preferred_element_type'] = preferred_element_type
  conv = conv_general_dilated or lax.conv_general_dilated
  if impl == 'lax':
    if conv_general_dilated is None:
      return lax.conv_transpose(
          inputs, kernel, tuple(strides), padding, precision=precision,
          preferred_element_type=preferred_element_type)
    # What lax.conv_transpose computes (transpose_kernel=False).
    return conv(inputs, kernel, (1,) * nd, pads, lhs_dilation=tuple(strides),
                **conv_kw)

  plans = [
      _PhasePlan(n, k, s, lo, hi)
      for n, k, s, (lo, hi) in zip(inputs.shape[1:-1], ks, strides, pads)
  ]
  w = _phase_kernel(kernel, plans)

  # Negative padding (cropping) is done by slicing, the rest by jnp.pad.
  x = inputs
  if any(p.pad_lo < 0 or p.pad_hi < 0 for p in plans):
    crop = [(0, 0, 0)] + [(min(p.pad_lo, 0), min(p.pad_hi, 0), 0) for p in plans]
    x = lax.pad(x, jnp.zeros((), x.dtype), crop + [(0, 0, 0)])
  pads = [(max(p.pad_lo, 0), max(p.pad_hi, 0)) for p in plans]
  if impl == 'conv':
    # Pad explicitly: XLA:CPU's kernel gradient of an even-sized kernel with
    # conv padding is pathologically slow (1.6 s vs 40 ms for 7x7x128, 2x2).
    x = jnp.pad(x, [(0, 0)] + pads + [(0, 0)])
    z = conv(x, w, (1,) * nd, 'VALID', **conv_kw)
  else:  # matmul
    # im2col: every tap's shifted view side by side on the channel axis, in
    # the (m_1..m_d, in) order of w's rows, then one matmul.
    x = jnp.pad(x, [(0, 0)] + pads + [(0, 0)])
    ms = tuple(p.m for p in plans)
    u = tuple(n - m + 1 for n, m in zip(x.shape[1:-1], ms))
    cols = [x[(slice(None),) + tuple(slice(t, t + l) for t, l in zip(taps, u))]
            for taps in itertools.product(*(range(m) for m in ms))]
    cols = jnp.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0]
    z = lax.dot_general(
        cols, w.reshape(-1, w.shape[-1]), (((nd + 1,), (0,)), ((), ())),
        precision=precision, preferred_element_type=preferred_element_type)

  batch = z.shape[0]
  phases = tuple(p.s for p in plans)
  z = z.reshape(z.shape[:-1] + phases + (features,))
  qs = tuple(p.q for p in plans)
  if all(len(set(p.offsets)) == 1 for p in plans):
    start = tuple(p.offsets[0] for p in plans)
    y = lax.slice(z, (0,) + start + (0,) * (nd + 1),
                  (batch,) + tuple(a + q for a, q in zip(start, qs)) + phases
                  + (features,))
  else:
    windows = []
    for rs in itertools.product(*(range(s) for s in phases)):
      start = tuple(p.offsets[r] for p, r in zip(plans, rs))
      windows.append(lax.slice(
          z, (0,) + start + rs + (0,),
          (batch,) + tuple(a + q for a, q in zip(start, qs))
          + tuple(r + 1 for r in rs) + (features,)))
    y = jnp.concatenate(windows, axis=nd + 1) if len(windows) > 1 else windows[0]
    y = y.reshape((batch,) + qs + phases + (features,))
  # (N, q_1..q_d, s_1..s_d, F) -> (N, q_1, s_1, ..., q_d, s_d, F) -> interleave.
  perm = (0,) + tuple(x for i in range(nd) for x in (1 + i, 1 + nd + i)) + (2 * nd + 1,)
  y = jnp.transpose(y, perm)
  y = y.reshape((batch,) + tuple(q * s for q, s in zip(qs, phases)) + (features,))
  outs = tuple(p.out for p in plans)
  if outs != y.shape[1:-1]:
    y = y[(slice(None),) + tuple(slice(0, o) for o in outs)]
  return y


class ConvTranspose(Module):
  """Transposed convolution equal to ``flax.linen.ConvTranspose``, faster to differentiate on CPU.

  Drop-in replacement for :class:`flax.linen.ConvTranspose`: same fields,
  same parameter names, shapes and default initialisers, so ``init`` with the
  same rng gives the same parameters and parameters are interchangeable. It
  computes the strided transposed convolution in sub-pixel (phase) form: one
  ordinary stride-1 convolution (or the equivalent im2col matmul) whose
  ``prod(strides) * features`` output channels hold every output phase,
  followed by interleaving. This avoids the input-dilated convolution whose
  kernel gradient is slow in XLA's CPU backend (about 6x faster forward +
  backward for DCGAN's 7x7x128 -> 14x14x64 layer). Where that gradient is
  cheap (``features == 1`` or stride 1) ``impl='auto'`` calls
  ``lax.conv_transpose`` like flax does.

  Use it wherever ``nn.ConvTranspose`` with ``strides > 1`` would be used,
  e.g. DCGAN generators. Supports 1-3 spatial dims, padding ``'SAME'``,
  ``'VALID'`` or explicit pairs; ``'CIRCULAR'`` and ``kernel_dilation > 1``
  raise ``NotImplementedError``.

  Attributes:
    features: number of output channels.
    kernel_size: spatial kernel shape (an int for 1D).
    strides: an int or one int per spatial dimension (default 1).
    padding: ``'SAME'``, ``'VALID'``, an int or ``(low, high)`` pairs, with the
      meaning ``nn.ConvTranspose`` gives them.
    kernel_dilation: must be ``None`` or 1.
    use_bias: whether to add a bias.
    mask: optional mask multiplied into the kernel.
    dtype: computation dtype (default: inferred from inputs and params).
    param_dtype: parameter dtype.
    precision: numerical precision of the convolution.
    kernel_init: initializer for the kernel, ``(*kernel_size, in, features)``.
    bias_init: initializer for the bias, ``(features,)``.
    transpose_kernel: as in ``nn.ConvTranspose``; kernel is then
      ``(*kernel_size, features, in)``.
    promote_dtype: dtype promotion function, as in ``nn.ConvTranspose``.
    preferred_element_type: accumulation dtype of the convolution.
    impl: ``'auto'`` (default), ``'matmul'``, ``'conv'`` or ``'lax'``; see
      :func:`conv_transpose_phase`. All give the same result.
    conv_general_dilated: the convolution function (as in ``nn.Conv``);
      None: ``lax.conv_general_dilated`` (``lax.conv_transpose`` for the
      ``'lax'`` impl). :func:`conv_general_dilated` computes the same, with
      gradients that XLA:CPU runs fast inside loops.
  """

  features: int
  kernel_size: int | Sequence[int]
  strides: Sequence[int] | int | None = None
  padding: Any = 'SAME'
  kernel_dilation: Sequence[int] | int | None = None
  use_bias: bool = True
  mask: Array | None = None
  dtype: Any = None
  param_dtype: Any = jnp.float32
  precision: Any = None
  kernel_init: Any = default_kernel_init
  bias_init: Any = initializers.zeros_init()
  transpose_kernel: bool = False
  promote_dtype: Any = promote_dtype
  preferred_element_type: Any = None
  impl: str = 'auto'
  conv_general_dilated: Any = None

  @compact
  def __call__(self, inputs: Array) -> Array:
    """Applies the transposed convolution.

    Args:
      inputs: ``[*batch, *spatial, in]`` (channels last); no batch dimension or
        several are handled as in ``nn.ConvTranspose``.

    Returns:
      ``[*batch, *out_spatial, features]``; for ``'SAME'`` padding
      ``out_spatial = spatial * strides``.
    """
    if isinstance(self.kernel_size, int):
      kernel_size = (self.kernel_size,)
    else:
      kernel_size = tuple(self.kernel_size)
    nd = len(kernel_size)
    if not 1 <= nd <= 3:
      raise NotImplementedError(f'ConvTranspose supports 1-3 spatial dims, got {nd}.')

    def broadcast(x):
      if x is None:
        x = 1
      return (x,) * nd if isinstance(x, int) else tuple(x)

    strides = broadcast(self.strides)
    if any(d != 1 for d in broadcast(self.kernel_dilation)):
      raise NotImplementedError(
          'ConvTranspose: kernel_dilation > 1 is not supported; use nn.ConvTranspose.')
    if isinstance(self.padding, str) and self.padding not in ('SAME', 'VALID'):
      raise NotImplementedError(
          f'ConvTranspose: padding {self.padding!r} is not supported (use SAME,'
          ' VALID or explicit pairs, or nn.ConvTranspose).')
    padding = canonicalize_padding(self.padding, nd)

    num_batch_dims = inputs.ndim - (nd + 1)
    if num_batch_dims != 1:
      batch_shape = inputs.shape[:num_batch_dims]
      inputs = jnp.reshape(inputs, (-1,) + inputs.shape[num_batch_dims:])

    in_features = jnp.shape(inputs)[-1]
    if self.transpose_kernel:
      kernel_shape = kernel_size + (self.features, in_features)
    else:
      kernel_shape = kernel_size + (in_features, self.features)
    if self.mask is not None and self.mask.shape != kernel_shape:
      raise ValueError('Mask needs to have the same shape as weights. '
                       f'Shapes are: {self.mask.shape}, {kernel_shape}')
    kernel = self.param('kernel', self.kernel_init, kernel_shape, self.param_dtype)
    if self.mask is not None:
      kernel *= self.mask
    bias = (self.param('bias', self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)

    if self.transpose_kernel:
      # What lax.conv_transpose does: flip spatial axes, swap in/out channels.
      kernel = jnp.flip(kernel, axis=tuple(range(nd))).swapaxes(-1, -2)
    y = conv_transpose_phase(inputs, kernel, strides, padding,
                             precision=self.precision,
                             preferred_element_type=self.preferred_element_type,
                             impl=self.impl,
                             conv_general_dilated=self.conv_general_dilated)
    if bias is not None:
      y += jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
    if num_batch_dims != 1:
      y = jnp.reshape(y, batch_shape + y.shape[1:])
    return y
