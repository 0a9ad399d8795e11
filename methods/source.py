"""The unedited-source baseline: returns its inputs. Every metric's floor (CLIP gain 0, identity 1)."""

from methods.base import EditMethod, EditResult, SourceBatch


class SourceBaseline(EditMethod):
    """Unedited source images."""

    def apply(self, backbones, sources: SourceBatch, edit) -> EditResult:
        return EditResult(edited_images=sources.images.clone(),
                          edited_latents=None if sources.latents is None else sources.latents.clone())
