"""Rules for ops that move data: views, copies, factories, and indexed gathers and scatters.

- DATA_MOVEMENT, 0 FLOPs: views and aliases (no new storage: 0 bytes read, 0 written); copies
  (``clone``, ``_to_copy``, ``cat``, ``index``, ...: read the inputs, write the outputs, or
  nothing when the result aliases its input); factories (``zeros``, ``ones_like``: write only);
  allocations and storage swaps (``empty``, ``new_empty_strided``, ``resize_``,
  ``set_``: nothing); shape queries (nothing). NB: a dtype
  conversion (``_to_copy``) counts 0 FLOPs.
- EMBEDDING, indexed memory access: ``embedding``, ``index_select``, ``gather`` 0 FLOPs and read
  only the gathered rows plus the indices; ``embedding_dense_backward`` one add per gradient
  element scattered into its row; ``scatter_add``/``index_add``/``scatter_reduce`` and
  ``index_put(accumulate=True)`` one add per source element; plain ``scatter``/``index_copy``/
  ``index_fill``/``index_put`` 0 FLOPs.
- OTHER with a rule: ``profiler`` record-function markers, 0 FLOPs and 0 bytes.
"""

from __future__ import annotations

from archcost.trace.records import OpClass, OpRecord
from archcost.trace.rules_base import (
    alloc_io,
    arg,
    copy_io,
    declare_positions,
    factory_io,
    gather_io,
    numel,
    overwrite_io,
    register,
    view_io,
    zero_flops,
)

declare_positions({
    "aten.embedding_dense_backward": "grad_output indices num_weights",
    "aten.scatter_add": "self dim index src",
    "aten.scatter_add_": "self dim index src",
    "aten.scatter_reduce": "self dim index src",
    "aten.scatter_reduce_": "self dim index src",
    "aten.index_add": "self dim index source",
    "aten.index_add_": "self dim index source",
    "aten.index_put": "self indices values accumulate",
    "aten.index_put_": "self indices values accumulate",
    "aten._index_put_impl_": "self indices values accumulate",
})


def _names(text: str) -> list[str]:
    return [f"aten.{n}" for n in text.split()]


# --- data movement ----------------------------------------------------------------------------
VIEW_OPS = _names(
    """view _unsafe_view t transpose permute expand expand_as slice select unsqueeze squeeze
    as_strided alias detach unfold view_as view_as_real view_as_complex split split_with_sizes
    unsafe_split unsafe_split_with_sizes tensor_split chunk unsafe_chunk unbind narrow diagonal
    movedim swapaxes _reshape_alias lift_fresh real imag _conj _neg_view t_ transpose_ squeeze_
    unsqueeze_ as_strided_ detach_"""
)
_COPY_OPS = _names(
    """clone _to_copy contiguous reshape flatten cat stack hstack vstack repeat roll flip
    constant_pad_nd pad reflection_pad1d reflection_pad2d reflection_pad3d replication_pad1d
    replication_pad2d replication_pad3d index _unsafe_index masked_select _local_scalar_dense
    tril triu repeat_interleave one_hot lift_fresh_copy select_backward slice_backward
    narrow_copy slice_scatter select_scatter diagonal_scatter as_strided_scatter expand_copy
    permute_copy view_copy t_copy transpose_copy unsqueeze_copy squeeze_copy alias_copy
    detach_copy split_copy split_with_sizes_copy unbind_copy pixel_shuffle pixel_unshuffle
    im2col col2im upsample_nearest1d upsample_nearest2d upsample_nearest3d _pin_memory"""
)
_FACTORY_OPS = _names(
    """zeros zeros_like ones ones_like full full_like new_zeros new_ones new_full arange
    scalar_tensor linspace logspace eye"""
)
_ALLOC_OPS = _names(
    "empty empty_like empty_strided empty_permuted new_empty new_empty_strided set_ resize_ "
    "resize_as_"
)
_QUERY_OPS = _names(
    """size stride numel dim sym_size sym_stride sym_numel sym_storage_offset storage_offset
    is_contiguous is_strides_like_format is_non_overlapping_and_dense is_same_size
    _has_compatible_shallow_copy_type"""
)

register(*VIEW_OPS, *_QUERY_OPS, op_class=OpClass.DATA_MOVEMENT, io=view_io)(zero_flops)
register(*_COPY_OPS, op_class=OpClass.DATA_MOVEMENT, io=copy_io)(zero_flops)
register("aten.copy", op_class=OpClass.DATA_MOVEMENT)(zero_flops)  # functional: reads both
register("aten.copy_", op_class=OpClass.DATA_MOVEMENT, io=overwrite_io)(zero_flops)
register(*_FACTORY_OPS, op_class=OpClass.DATA_MOVEMENT, io=factory_io)(zero_flops)
register(*_ALLOC_OPS, op_class=OpClass.DATA_MOVEMENT, io=alloc_io)(zero_flops)


# --- gathers and scatters ---------------------------------------------------------------------
register("aten.embedding", "aten.index_select", "aten.gather", "aten.take_along_dim",
         op_class=OpClass.EMBEDDING, io=gather_io)(zero_flops)


@register("aten.embedding_dense_backward", op_class=OpClass.EMBEDDING)
def embedding_dense_backward(rec: OpRecord) -> int:
    return numel(arg(rec, "grad_output"))  # each gradient row added into its weight row


@register("aten.scatter_add", "aten.scatter_add_", "aten.scatter_reduce", "aten.scatter_reduce_",
          op_class=OpClass.EMBEDDING)
def scatter_add(rec: OpRecord) -> int:
    return numel(arg(rec, "src"))


@register("aten.index_add", "aten.index_add_", op_class=OpClass.EMBEDDING)
def index_add(rec: OpRecord) -> int:
    return numel(arg(rec, "source"))


@register("aten.index_put", "aten.index_put_", "aten._index_put_impl_", op_class=OpClass.EMBEDDING)
def index_put(rec: OpRecord) -> int:
    """Adds when ``accumulate`` (advanced-indexing backward), a plain store otherwise."""
    return numel(arg(rec, "values")) if arg(rec, "accumulate", False) else 0


register(*_names("scatter scatter_ index_copy index_copy_ index_fill index_fill_ masked_scatter "
                 "masked_scatter_"), op_class=OpClass.EMBEDDING)(zero_flops)


# --- bookkeeping ------------------------------------------------------------------------------
# record_function markers (optimizer steps emit them): no data, no arithmetic
register("profiler._record_function_enter", "profiler._record_function_enter_new",
         "profiler._record_function_exit", op_class=OpClass.OTHER, io=view_io)(zero_flops)
