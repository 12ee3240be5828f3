"""Backend-specific choices for the step, decided once, outside the traced step.

XLA:CPU runs the gradients of plain convolutions ~10x slower inside a loop body
(``lax.scan``) than outside: they are not rewritten into its fast canonical
form. ``ganjax.models.layers.conv_general_dilated`` has canonical gradients,
so the models' convs run as fast in the scan as unrolled
(``benchmarks/results/benchmark.md``). For a discriminator with plain convs
on CPU, the k discriminator updates are therefore unrolled; everywhere else
they run in one ``jax.lax.scan`` (compile time independent of k).
``GAN.init`` calls ``choose_d_loop`` once for ``GAN(d_loop='auto')``.
"""

import jax
import jax.numpy as jnp

D_LOOPS = ("auto", "scan", "unroll")


def _aval(x) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))


def _plain_convs_in(jaxpr) -> bool:
  """Whether ``jaxpr`` has a ``conv_general_dilated`` outside a ``custom_vjp``."""
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      return True
    if name.startswith("custom_vjp"):
      continue  # a custom backward pass, e.g. ganjax.models.layers'
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        sub = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
        if hasattr(sub, "eqns") and _plain_convs_in(sub):
          return True
  return False


def has_plain_convs(apply_fn, params, stats, inputs: tuple) -> bool:
  """Whether ``apply_fn(params, stats, inputs)`` (a model in training mode,
  traced on one example) has plain ``lax`` convs (slow gradients in loops on CPU)."""
  avals = lambda tree: jax.tree.map(_aval, tree)
  one = tuple(jax.ShapeDtypeStruct((1,) + jnp.shape(x)[1:], jnp.result_type(x))
              for x in inputs)
  jaxpr = jax.make_jaxpr(apply_fn)(avals(params), avals(stats), one).jaxpr
  return _plain_convs_in(jaxpr)


def unrolled_scan(f, init, xs):
  """``jax.lax.scan(f, init, xs)`` unrolled into straight-line code."""
  length = jax.tree.leaves(xs)[0].shape[0]
  carry, outputs = init, []
  for i in range(length):
    carry, out = f(carry, jax.tree.map(lambda x: x[i], xs))
    outputs.append(out)
  return carry, jax.tree.map(lambda *ys: jnp.stack(ys), *outputs)


def choose_d_loop(d_loop: str, apply_fn, params, stats, inputs: tuple) -> str:
  """``'scan'`` or ``'unroll'`` for ``GAN(d_loop=d_loop)`` on this backend."""
  if d_loop != "auto":
    return d_loop
  slow = (jax.default_backend() == "cpu"
          and has_plain_convs(apply_fn, params, stats, inputs))
  return "unroll" if slow else "scan"


def loop(d_loop: str):
  """The loop for a resolved ``d_loop``: ``jax.lax.scan`` or ``unrolled_scan``."""
  return jax.lax.scan if d_loop == "scan" else unrolled_scan
