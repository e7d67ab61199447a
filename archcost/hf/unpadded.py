"""The real step's answers to the questions ``transformers`` cannot ask fake tensors.

``transformers`` decides how to mask attention by reading the batch: whether a row packs several
sequences (position ids that restart) and whether any token is padding (a padding mask with a
zero). When it cannot read them, as under fake tensors, it assumes both and builds an explicit
attention mask, where the real step over the example inputs (one full-length sequence per row, no
padding) builds none and runs SDPA with ``is_causal`` (or no mask at all).

:func:`answer_as_unpadded` installs hooks on the model so that, while its forward runs, these
questions get the real step's answers for fake tensors: no packed sequences, no padding. Real
tensors are read as before. NB: this states the assumption the example inputs make; a model that
derives its padding mask from token ids (``input_ids != pad_token_id``) would find padding in a
real step whenever a random id equals the pad id, which the trace does not count.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["answer_as_unpadded"]


def _wrappers(module, is_fake) -> dict[str, Callable]:
    """transformers.masking_utils functions -> the same function answering for fake tensors."""

    def no_packing(find):
        def unpacked(position_ids, *args, **kwargs):
            return None if is_fake(position_ids) else find(position_ids, *args, **kwargs)
        return unpacked

    def no_padding(ignore):
        def unpadded(padding_mask, *args, **kwargs):
            mask = None if padding_mask is not None and is_fake(padding_mask) else padding_mask
            return ignore(mask, *args, **kwargs)
        return unpadded

    out = {}
    for name, wrap in (("find_packed_sequence_indices", no_packing),
                       ("_ignore_causal_mask_sdpa", no_padding),
                       ("_ignore_bidirectional_mask_sdpa", no_padding)):
        fn = getattr(module, name, None)  # absent from other transformers versions: nothing asked
        if callable(fn):
            out[name] = wrap(fn)
    return out


def answer_as_unpadded(model) -> None:
    """Hook ``model`` so that during its forward transformers finds one sequence per row and no
    padding in fake tensors."""
    from torch._subclasses.fake_tensor import is_fake

    try:
        from transformers import masking_utils
    except ImportError:
        return
    wrappers = _wrappers(masking_utils, is_fake)
    stack: list[dict[str, Callable]] = []

    def enter(_module, _args):
        stack.append({name: getattr(masking_utils, name) for name in wrappers})
        for name, fn in wrappers.items():
            setattr(masking_utils, name, fn)

    def leave(_module, _args, _output):
        for name, fn in stack.pop().items():
            setattr(masking_utils, name, fn)

    model.register_forward_pre_hook(enter)
    model.register_forward_hook(leave, always_call=True)
