"""The synthetic face world: the embedded default backbone of the benchmark (no downloadable weights needed).

A procedural renderer draws 64x64 faces from known parameters (identity, editable attributes, image domain);
captions are generated from the same parameters. The project trains its generator, CLIPs, identity network,
attribute judge and inversion encoder on these renders.

* `params`: the parameter space, the one home of the attribute and domain tables (`ATTRIBUTES`, `DOMAINS`).
* `render`: `render(params)` -> [N, 3, 64, 64] in [-1, 1].
* `domains`: the image domains (photo + NADA targets) and their caption words.
* `captions`: captions, edit prompts and CLIP template wrapping.
"""

from .domains import DOMAIN_NAMES, DOMAINS, DomainSpec, apply_domain, domain_index
from .params import (ATTRIBUTE_SPECS, ATTRIBUTES, CONTINUOUS_ATTRIBUTES, IDENTITY_PARAMS, N_ID, SMILE_BINS,
                     AttributeSpec, FaceParams, attribute_class, sample_attributes, sample_identities,
                     sample_params, value_index, value_name, vary, with_attribute, with_domain, with_identity)
from .render import landmarks, render, render_with_masks
from .captions import (DOMAIN_PROMPTS, EDIT_PROMPTS, EditPrompt, caption, caption_vocabulary, captions,
                       wrap_in_template)

__all__ = [
    "ATTRIBUTES", "ATTRIBUTE_SPECS", "CONTINUOUS_ATTRIBUTES", "DOMAINS", "DOMAIN_NAMES", "IDENTITY_PARAMS", "N_ID",
    "SMILE_BINS", "AttributeSpec", "DomainSpec", "FaceParams", "apply_domain", "attribute_class", "domain_index",
    "landmarks", "render", "render_with_masks", "sample_attributes", "sample_identities", "sample_params",
    "value_index", "value_name", "vary", "with_attribute", "with_domain", "with_identity",
    "DOMAIN_PROMPTS", "EDIT_PROMPTS", "EditPrompt", "caption", "caption_vocabulary", "captions", "wrap_in_template",
]
