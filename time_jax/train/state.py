"""The train state and its sharded creation from the model and the optimizer.

With ``train.ema_decay > 0`` the state also holds an exponential moving average of the
parameters (``ema_params``, timm's ``ModelEma`` that VideoMAE's ``--model_ema`` uses):
it starts as a copy of the parameters (`start_ema`), and after every optimizer step
``ema = decay · ema + (1 - decay) · params`` (`time_jax.train.steps`). Without EMA,
``ema_params`` is ``{}``: no arrays, the same tree for every model.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax.sharding import Mesh

from time_jax.train import sharding


@flax.struct.dataclass
class TrainState:
  """Everything a step changes and a checkpoint holds (with the data iterator state).

  Attributes:
    step: int32 scalar, optimizer steps done.
    params: float32 parameters.
    batch_stats: BatchNorm statistics (empty for models without BatchNorm).
    opt_state: the optax state, float32.
    rng: uint32 ``[2]`` base PRNG key; step ``s`` uses ``fold_in(rng, s)``.
    ema_params: the exponential moving average of ``params`` (same tree, dtypes and
      shardings) when ``train.ema_decay > 0``, else ``{}``.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array
  ema_params: Any = flax.struct.field(default_factory=dict)


def start_ema(state: TrainState) -> TrainState:
  """``state`` whose ``ema_params`` are a copy of its ``params`` (same shardings).

  The EMA starts at the weights training starts from: the initialisation, or the
  weights ``checkpoint.init_from`` loads (as VideoMAE builds its ``ModelEma`` after
  loading ``--finetune``). Works inside and outside ``jit``.
  """
  return state.replace(ema_params=jax.tree.map(jnp.copy, state.params))


def _opt_shardings(tx: optax.GradientTransformation, abstract_opt_state: Any,
                   param_shardings: Any, mesh: Mesh) -> Any:
  """Optimizer-state leaves shaped like params get the params' sharding; the rest replicate."""
  rep = sharding.replicated(mesh)
  return optax.tree_map_params(
      tx, lambda _, s: s, abstract_opt_state, param_shardings,
      transform_non_params=lambda _: rep,
      is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct))


def create(init_fn: Callable[[jax.Array], dict[str, Any]],
           make_tx: Callable[[Any], optax.GradientTransformation],
           rng: jax.Array, mesh: Mesh, *, ema: bool = False
           ) -> tuple[TrainState, TrainState, optax.GradientTransformation]:
  """Initialises a sharded `TrainState` directly on the devices.

  Args:
    init_fn: ``rng -> variables`` (``model.init`` on dummy inputs); parameters may be
      ``nn.LogicallyPartitioned``.
    make_tx: ``unboxed params -> optimizer`` (`optimizer.create` partially applied).
    rng: the base key; parameters are drawn from ``fold_in(rng, -1)``-style split.
    mesh: the device mesh.
    ema: keep ``ema_params`` (``train.ema_decay > 0``), sharded like the parameters.

  Returns:
    ``(state, state_shardings, tx)``.
  """
  init_key, state_key = jax.random.split(rng)
  boxed = jax.eval_shape(init_fn, init_key)
  var_shardings = sharding.shardings(boxed, mesh)
  abstract_vars = nn.unbox(boxed)
  tx = make_tx(abstract_vars["params"])
  abstract_opt = jax.eval_shape(tx.init, abstract_vars["params"])
  rep = sharding.replicated(mesh)
  shardings = TrainState(
      step=rep, params=var_shardings["params"],
      batch_stats=var_shardings.get("batch_stats", {}),
      opt_state=_opt_shardings(tx, abstract_opt, var_shardings["params"], mesh),
      rng=rep, ema_params=var_shardings["params"] if ema else {})

  def init(key):
    variables = nn.unbox(init_fn(key))
    params = variables["params"]
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                       batch_stats=variables.get("batch_stats", {}),
                       opt_state=tx.init(params), rng=state_key)
    return start_ema(state) if ema else state

  state = jax.jit(init, out_shardings=shardings)(init_key)
  return state, shardings, tx
